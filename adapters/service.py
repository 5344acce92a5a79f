"""What the runner needs from each platform: start, stop, and a way to notice it died."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiohttp import web


class PlatformService(Protocol):
    name: str
    observers: list[Callable[[str], None]]
    """Told what became of each platform event ("ignored", "duplicate", "turn:answered", ...)."""

    def add_routes(self, app: web.Application) -> None:
        """Add HTTP endpoints to the shared web server (Slack's events URL, for example)."""

    async def start(self) -> None:
        """Connect; returns once the platform is being served."""

    async def wait_closed(self) -> None:
        """Returns (or raises) when the service stops on its own: a fatal error or a lost connection."""

    async def stop(self, grace: float) -> None:
        """Stop taking new events and let replies in flight finish within grace seconds."""
