"""Logging setup: text or JSON lines, each carrying the turn's correlation id.

Our own log lines never carry message text or secrets; libraries that would are kept quiet.
"""

from __future__ import annotations

import contextvars
import json
import logging
import uuid

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

turn_id: contextvars.ContextVar[str] = contextvars.ContextVar("turn_id", default="-")
"""The current turn's correlation id; tasks started during a turn inherit it."""


def new_turn_id() -> str:
    value = uuid.uuid4().hex[:12]
    turn_id.set(value)
    return value


class _TurnFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.turn = turn_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "turn": getattr(record, "turn", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_TurnFilter())
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = __import__("time").gmtime  # type: ignore[attr-defined]
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(turn)s]: %(message)s")
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])  # leaves handlers already installed (tests) alone
    logging.getLogger().setLevel(level)
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(quiet)
