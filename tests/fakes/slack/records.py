"""What the fake Slack records and the tests read: calls, posted messages, ids and timestamps."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


DEFAULT_TEAM_ID = "T1"
DEFAULT_BOT_USER_ID = "UBOT"
DEFAULT_BOT_ID = "BBOT"
DEFAULT_APP_ID = "A1"
DEFAULT_SCOPES = (
    "app_mentions:read,assistant:write,channels:history,channels:read,chat:write,commands,files:read,"
    "groups:history,groups:read,im:history,mpim:history,reactions:read,users:read"
)
# chat.postMessage documents a 40,000 character limit on `text`; markdown_text on the
# streaming methods is limited to 12,000 characters per call.
MAX_TEXT_CHARS = 40_000
MAX_MARKDOWN_CHARS = 12_000
MAX_SUGGESTED_PROMPTS = 4


# --------------------------------------------------------------------------------------
# Timestamps and ids
# --------------------------------------------------------------------------------------

_ts_counter = itertools.count(1)
_event_counter = itertools.count(1)


def next_ts() -> str:
    """Return a unique, increasing Slack message timestamp ("1700000000.000100", ...).

    Shared by the fake and the payload builders, so a bot reply always sorts after the
    user message that caused it, as it would in Slack.
    """
    n = next(_ts_counter) * 100
    return f"{1_700_000_000 + n // 1_000_000}.{n % 1_000_000:06d}"


def _next_event_id() -> str:
    """Event ids look like "Ev0PV52K21"; uniqueness is what matters for de-duplication."""
    return f"Ev{next(_event_counter):08X}"


def _ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps (string sorting breaks across digit counts)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds or 0), int(micros or 0)


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Web API request as the fake received it."""

    method: str
    args: dict[str, Any]
    token: str | None
    t: float  # time.monotonic() on arrival
    http_method: str = "POST"
    status: int = 200  # HTTP status the fake answered with
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")


@dataclass
class PostedMessage:
    """A message the fake holds, as a Slack client would currently render it.

    ``text`` is the visible text after every update; for streamed messages it is the
    concatenated markdown of start/append/stop. ``versions`` keeps each text it had.
    """

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    user: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    blocks: list[Any] | None = None
    streamed: bool = False
    stream_state: str | None = None  # "streaming" | "completed" | an error code once interrupted
    stream_mode: str | None = None  # "text" (markdown_text) or "chunks", fixed by first content
    chunks: list[dict[str, Any]] = field(default_factory=list)  # non-markdown chunks (tasks, plans)
    versions: list[str] = field(default_factory=list)
    deleted: bool = False
    seeded: bool = False
    reactions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_bot(self) -> bool:
        return self.bot_id is not None

    def to_api(self) -> dict[str, Any]:
        """The message object as conversations.replies / chat.* responses show it."""
        data: dict[str, Any] = {"type": "message", "text": self.text, "ts": self.ts}
        if self.user is not None:
            data["user"] = self.user
        if self.bot_id is not None:
            data["bot_id"] = self.bot_id
        if self.app_id is not None:
            data["app_id"] = self.app_id
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.blocks is not None:
            data["blocks"] = self.blocks
        if len(self.versions) > 1 and not self.streamed:
            data["edited"] = {"user": self.user, "ts": self.ts}
        if self.reactions:
            data["reactions"] = [
                {"name": name, "users": [], "count": self.reactions.count(name)}
                for name in dict.fromkeys(self.reactions)
            ]
        data.update(self.extra)
        return data


class _ApiError(Exception):
    """Raised by a method handler: answered as HTTP 200 {"ok": false, "error": ...}."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    remaining: int
    extra: dict[str, Any] = field(default_factory=dict)
    """More fields of the error answer, as Slack sends with some errors (missing_scope: needed, provided)."""


Handler = Callable[[Call], Mapping[str, Any]]
