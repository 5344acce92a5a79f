"""Logging setup. Our own log lines never carry message text or secrets; libraries that would are kept quiet."""

from __future__ import annotations

import logging

QUIET_LIBRARIES = {
    # slack_sdk logs request bodies (message text) at DEBUG; Bolt logs unhandled payloads at WARNING.
    "slack_sdk": logging.WARNING,
    "slack_bolt": logging.ERROR,
    "discord": logging.WARNING,
    "httpx2": logging.WARNING,
    "httpx": logging.WARNING,
    "openai": logging.WARNING,
    "aiohttp.access": logging.WARNING,
}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(quiet)
