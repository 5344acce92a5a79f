"""Discord's constants and what the fake records: permissions, intents, REST calls, gateway frames, interactions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from aiohttp import web


log = logging.getLogger(__name__)
DISCORD_EPOCH_MS = 1420070400000
API_VERSION = 10


class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5  # "Manage Server"
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    PRIORITY_SPEAKER = 1 << 8
    STREAM = 1 << 9
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    USE_VAD = 1 << 25
    CHANGE_NICKNAME = 1 << 26
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1

    #: What @everyone gets in a freshly created guild (close to Discord's default).
    DEFAULT_EVERYONE = (
        CREATE_INSTANT_INVITE | ADD_REACTIONS | STREAM | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
        | ATTACH_FILES | READ_MESSAGE_HISTORY | USE_EXTERNAL_EMOJIS | CONNECT | SPEAK | USE_VAD
        | CHANGE_NICKNAME | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS | CREATE_PRIVATE_THREADS
        | SEND_MESSAGES_IN_THREADS
    )


class Intent:
    """Gateway intent bits; Discord filters dispatches by them, and so does the fake."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


THREAD_TYPES = frozenset({10, 11, 12})
DM_TYPES = frozenset({1, 3})
MSG_FLAG_EPHEMERAL = 1 << 6
MSG_FLAG_LOADING = 1 << 7
_AUTO: Any = object()  # sentinel: "derive this from the channel"


# --------------------------------------------------------------------------------------------
# Records the tests read
# --------------------------------------------------------------------------------------------


@dataclass
class RestCall:
    """One REST request as the fake received it (path is relative to /api/v10)."""

    method: str
    path: str
    json: Any
    t: float = field(default_factory=time.monotonic)
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0
    files: list[tuple[str, bytes]] = field(default_factory=list)

    def __str__(self) -> str:
        body = "" if self.json is None else " " + json.dumps(self.json, ensure_ascii=False)[:160]
        return f"{self.method} {self.path} -> {self.status}{body}"


@dataclass
class FailRule:
    """A pending injected failure; ``hits`` counts how often it fired."""

    method: str
    path_substring: str
    status: int
    retry_after: float
    global_: bool
    times: int | None
    code: int | None
    message: str | None
    via: bool
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and self.path_substring in path and (self.times is None or self.times > 0)


@dataclass
class GatewayFrame:
    """A gateway payload sent to ("send") or received from ("recv") the client, decoded."""

    direction: str
    op: int
    t: str | None
    s: int | None
    d: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class InteractionRecord:
    """Server-side state of one dispatched interaction and everything the bot answered."""

    id: int
    token: str
    name: str
    channel_id: int
    guild_id: int | None
    user_id: int
    payload: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    ack_type: int | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_message_id: int | None = None
    followup_message_ids: list[int] = field(default_factory=list)
    ephemeral: bool = False
    loading: bool = False


# --------------------------------------------------------------------------------------------
# Internal model
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """Raised by route handlers; rendered as Discord's JSON error body."""

    def __init__(self, status: int, message: str, code: int = 0, errors: dict | None = None,
                 headers: dict[str, str] | None = None, body: dict | None = None, via: bool = True) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors
        self.headers = headers or {}
        self.body = body
        self.via = via


def _invalid_form(path: str, code: str, message: str) -> _ApiError:
    errors: dict[str, Any] = {}
    node = errors
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = {"_errors": [{"code": code, "message": message}]}
    return _ApiError(400, "Invalid Form Body", 50035, errors)


class _Snowflakes:
    """Generates strictly increasing, realistic snowflakes (discord.py derives created_at from them)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (ms << 22) | (1 << 17) | (1 << 12)
        self._last = max(candidate, self._last + 1)
        return self._last


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc).isoformat()


def _iso_from_snowflake(snowflake: int) -> str:
    return _iso(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000)


@dataclass
class _Guild:
    id: int
    name: str
    owner_id: int
    joined_at: str
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)  # includes threads
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # user_id -> {roles, nick, joined_at}
    unavailable: bool = False


class _Conn:
    """One gateway websocket connection."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, compress: bool) -> None:
        self.ws = ws
        self.request = request
        self.path = request.path
        self.query = dict(request.query)
        self._zlib = zlib.compressobj() if compress else None
        self._send_lock = asyncio.Lock()
        self.session: _Session | None = None
        self.cursor = 0  # index into session.history of the next frame to write
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        self.ready = False
        self.closed = False
        self.identify: dict[str, Any] | None = None
        self.resume: dict[str, Any] | None = None

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            if self._zlib is not None:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)


class _Session:
    """A gateway session: survives disconnects so RESUME can replay what the client missed."""

    def __init__(self, session_id: str, intents: int, shard: list[int] | None) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.history: list[tuple[int, str, str]] = []  # (seq, event, frame text)
        self.conn: _Conn | None = None
        self.invalid = False

    @property
    def shard_id(self) -> int:
        """IDENTIFY without ``shard`` is shard 0 of 1, as on Discord."""
        return int(self.shard[0]) if self.shard else 0

    @property
    def shard_count(self) -> int:
        return int(self.shard[1]) if self.shard else 1

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session's shard receives the guild's events; DMs and guild-less events go to shard 0."""
        if guild_id is None:
            return self.shard_id == 0
        return shard_of(guild_id, self.shard_count) == self.shard_id

    @property
    def live(self) -> bool:
        """Connected, past READY / RESUMED, and every queued dispatch written."""
        conn = self.conn
        return bool(conn and conn.ready and not conn.closed and conn.cursor >= len(self.history))


def shard_of(guild_id: int, shard_count: int) -> int:
    """Discord's rule: a guild's events arrive on shard ``(guild_id >> 22) % shard_count``."""
    return (guild_id >> 22) % shard_count


def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Content-Type must be exactly "application/json": discord.py's json_or_text() compares the header
    # verbatim and returns a str for "application/json; charset=utf-8" (what web.json_response sends).
    resp = web.Response(status=status, body=json.dumps(data).encode(), headers=dict(headers or {}))
    resp.headers["Content-Type"] = "application/json"
    return resp
