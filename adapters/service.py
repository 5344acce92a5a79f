"""What every platform service shares: the runner's protocol, outcome observers, votes, erase on removal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from chatbots.engine import Engine
from chatbots.types import Outcome, TurnStatus, Vote

log = logging.getLogger(__name__)

Observer = Callable[[Outcome], None]

THUMBS: dict[str, Vote] = {"+1": Vote.UP, "thumbsup": Vote.UP, "👍": Vote.UP,
                           "-1": Vote.DOWN, "thumbsdown": Vote.DOWN, "👎": Vote.DOWN}
"""Reactions that count as feedback: Slack's names and Discord's emoji for thumbs up and down."""


def vote_for(reaction: object) -> Vote | None:
    """The vote a reaction casts, any skin tone ("+1::skin-tone-2"); None for any other emoji."""
    if not isinstance(reaction, str):
        return None
    return THUMBS.get(reaction.split("::", 1)[0])


def describe(error: BaseException) -> str:
    """An exception as a short phrase for logs: its type, and its code when it has one (a gateway close)."""
    code = getattr(error, "code", None)
    return f"{type(error).__name__} {code}" if code is not None else type(error).__name__


class PlatformService(Protocol):
    name: str
    observers: list[Observer]
    """Told what became of each platform event ("ignored", "duplicate", "turn:answered", ...)."""

    def add_routes(self, app: web.Application) -> None:
        """Add HTTP endpoints to the shared web server (Slack's events URL, for example)."""

    async def start(self) -> None:
        """Connect; returns once the platform is being served."""

    async def wait_closed(self) -> None:
        """Returns (or raises) when the service stops on its own: a fatal error or a lost connection."""

    async def stop(self, grace: float) -> None:
        """Stop taking new events and let replies in flight finish within grace seconds."""


class ServiceBase:
    """The platform-independent half of a service: observers, votes and erasing a workspace, over the engine."""

    name: str
    platform: str

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.observers: list[Observer] = []
        """Told the outcome of every event ("ignored", "duplicate", "turn:answered", ...): metrics, tests."""

    def _observe(self, outcome: Outcome) -> None:
        for observer in self.observers:
            observer(outcome)

    def _observe_turn(self, status: TurnStatus) -> None:
        self._observe(Outcome.of_turn(status))

    async def _vote(self, workspace: str, reply_id: str, user_id: str, vote: Vote, *, withdrawn: bool) -> None:
        """A vote on one of the bot's replies. Not de-duplicated: a vote is an upsert (or a delete), so a redelivery
        changes nothing, and reactions anywhere in the workspace must not fill the events table."""
        found = await self.engine.record_vote(self.platform, workspace, reply_id, user_id, None if withdrawn else vote)
        self._observe(Outcome.FEEDBACK if found else Outcome.IGNORED)

    async def _erase(self, workspace: str) -> None:
        """The bot was removed from a workspace (uninstalled, token revoked, left the server): erase what it kept."""
        await self.engine.erase_workspace(self.platform, workspace)
        log.info("%s: removed from a workspace; its stored data was deleted", self.platform)
        self._observe(Outcome.WORKSPACE_DELETED)
