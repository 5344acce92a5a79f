"""The platform-free vocabulary shared by the core and every adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives. The thread is always part of it, so threads never blur together.

    Slack: ("slack", team_id, channel, thread_ts). Discord: ("discord", guild_id or "dm", channel, thread or channel).
    """

    platform: str
    workspace: str
    channel: str
    thread: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as the core sees it, whatever platform it came from."""

    key: ConversationKey
    message_id: str
    author_id: str
    author_name: str
    text: str
    addressed: bool | None = True
    """True: answer it. False: keep it as context only (chatter in a thread the bot is part of).
    None: a follow-up in the bot's thread with no mention: answered when it continues the exchange with the bot
    (the bot spoke last, or this person is the only one talking to it), kept as context otherwise."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    """True when the server reported no usage and the tokenizer counted instead."""

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Reply(Protocol):
    """How the core talks back: an adapter implements this per platform.

    The core calls start() once, append() for each piece of visible text, then exactly one of finish() or
    fail(). Adapters decide how to show it (streaming API, throttled edits, typing indicator, splitting).
    """

    async def start(self) -> None:
        """Show that an answer is coming (a thinking status, a typing indicator)."""

    async def append(self, text: str) -> None:
        """Add text to the visible reply; cheap to call often, the adapter batches."""

    async def finish(self) -> list[str]:
        """Make everything appended visible; return the platform ids of the messages that hold the reply."""

    async def fail(self, notice: str) -> list[str]:
        """End the reply with a short notice for the person; text already shown stays."""
