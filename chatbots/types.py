"""The platform-free vocabulary shared by the core and every adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Protocol


class Addressed(StrEnum):
    """Whether a message asks the bot for an answer."""

    YES = "yes"
    """Answer it (a mention, a DM, a message in a thread the bot started for this person)."""
    CONTEXT = "context"
    """Keep it as context only (chatter in a thread the bot is part of)."""
    IF_CONTINUING = "if_continuing"
    """A follow-up in the bot's thread with no mention: answered when it continues the exchange with the bot (the
    bot spoke last, or this person is the only one talking to it), kept as context otherwise."""


class TurnStatus(StrEnum):
    """What became of one message in the engine; the values are metric labels and log text."""

    ANSWERED = "answered"
    FAILED = "failed"
    REFUSED = "refused"
    """Over a cap."""
    FLAGGED = "flagged"
    """Moderation flagged the question or the answer."""
    MODERATION_UNAVAILABLE = "moderation_unavailable"
    STORED = "stored"
    """Kept as context only."""
    DUPLICATE = "duplicate"
    EMPTY = "empty"
    BUSY = "busy"
    """The conversation's queue is full."""
    NO_ROOM = "no_room"
    """The instructions fill the model's whole window."""
    STORAGE_ERROR = "storage_error"


class Decision(StrEnum):
    """A moderation verdict; the values are what the moderation log stores and the metrics label."""

    PASSED = "passed"
    FLAGGED = "flagged"
    ERROR_BLOCKED = "error_blocked"
    """The moderation call failed and CHATBOTS_MODERATION_ON_ERROR=block."""
    ERROR_ALLOWED = "error_allowed"


class Outcome(StrEnum):
    """What a platform service did with one event: told to its observers (metrics, tests)."""

    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    """A retry or redelivery of an event already taken."""
    NOT_OURS = "not_ours"
    """A thread the bot is not part of."""
    OWN = "own"
    """The bot's own post or edit, echoed back."""
    FORBIDDEN = "forbidden"
    SHUTTING_DOWN = "shutting_down"
    COMMAND = "command"
    COMMAND_MALFORMED = "command:malformed"
    COMMAND_ERROR = "command:error"
    COMMANDS_SYNCED = "commands_synced"
    FEEDBACK = "feedback"
    ASSISTANT_THREAD = "assistant_thread"
    """An assistant panel thread started, or the channel beside it changed."""
    HOME = "home"
    """A Home tab published."""
    WORKSPACE_DELETED = "workspace_deleted"
    TURN_ERROR = "turn:error"
    """The turn raised (it was cancelled, or the adapter failed around it)."""
    TURN_ANSWERED = "turn:answered"
    TURN_FAILED = "turn:failed"
    TURN_REFUSED = "turn:refused"
    TURN_FLAGGED = "turn:flagged"
    TURN_MODERATION_UNAVAILABLE = "turn:moderation_unavailable"
    TURN_STORED = "turn:stored"
    TURN_DUPLICATE = "turn:duplicate"
    TURN_EMPTY = "turn:empty"
    TURN_BUSY = "turn:busy"
    TURN_NO_ROOM = "turn:no_room"
    TURN_STORAGE_ERROR = "turn:storage_error"

    @classmethod
    def of_turn(cls, status: TurnStatus) -> Outcome:
        return cls(f"turn:{status}")

    @property
    def kind(self) -> str:
        """The metric label: "turn" for every turn outcome, "command" for every command one."""
        return self.value.split(":", 1)[0]


class Vote(IntEnum):
    """Feedback on one of the bot's replies, as the store keeps it."""

    UP = 1
    DOWN = -1


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives. The thread is always part of it, so threads never blur together.

    Slack: ("slack", team_id, channel, thread_ts). Discord: ("discord", guild_id or "dm", channel, thread or channel).
    """

    platform: str
    workspace: str
    channel: str
    thread: str


class FileUnavailable(Exception):
    """A shared file could not be fetched; `reason` is short, safe to show the person, and names no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileTooLarge(FileUnavailable):
    """The download stopped because the file is bigger than the max_bytes it was given: the core names its limit."""

    def __init__(self, reason: str = "it is too large") -> None:
        super().__init__(reason)


Download = Callable[[int, float], Awaitable[bytes]]
"""download(max_bytes, timeout) -> the file's bytes. Raises FileUnavailable: over max_bytes (stops reading as soon
as it is exceeded; FileTooLarge says so), timed out, refused by the host, or a URL outside the platform's own file hosts."""


@dataclass(frozen=True, slots=True)
class SharedFile:
    """A file attached to an incoming message: what the platform says of it, and how the core may fetch it.

    The adapter decides where a download may go (only the platform's own file hosts) and with which credentials;
    the core decides whether and when to fetch, within its limits.
    """

    name: str
    mimetype: str
    """As the platform reports it; "" when unknown."""
    size: int | None
    """Bytes, as the platform reports it; None when unknown."""
    download: Download


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as the core sees it, whatever platform it came from."""

    key: ConversationKey
    message_id: str
    author_id: str
    author_name: str
    text: str
    addressed: Addressed = Addressed.YES
    files: tuple[SharedFile, ...] = ()


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
