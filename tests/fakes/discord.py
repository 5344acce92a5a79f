"""A fake Discord server (REST API + gateway) on loopback, driven by the real discord.py.

Why: mocking discord.py internals (dpytest and friends) tests the mock, not the wire. This fake
speaks Discord's actual wire format on 127.0.0.1 so the shipped code path (HTTP client, rate-limit
handling, gateway session, parsers, app-command tree, webhook adapter) runs for real, offline.

Point discord.py at it with two class attributes (see :func:`redirect_discordpy`)::

    discord.http.Route.BASE = fake.api_url                         # "http://127.0.0.1:P/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = fake.gateway_url   # a yarl.URL, not a str

Payloads are schema-complete for discord.py 2.7: a missing key inside a gateway parser raises in the
client's connect task and silently kills the bot, so every builder here emits every field Discord does.

Overview (details in each docstring):

* world: ``add_guild / add_role / add_channel / set_overwrite / add_member / add_user / dm_channel``;
  changes made after the client connected are dispatched (GUILD_CREATE, CHANNEL_CREATE, ...).
* gateway: ``send_message / send_dm / send_message_update / send_message_delete / send_reaction_add /
  send_reaction_remove / send_interaction / send_guild_delete / dispatch``; ``disconnect_gateway``,
  ``gateway_offline()``, ``send_reconnect``, ``invalidate_session``; ``refuse_privileged``.
* REST record: ``calls`` / ``calls_matching``; message model: ``messages / bot_messages / bot_contents /
  content_history / get_message``; ``interactions``; ``commands``.
* faults and load: ``fail_next``, ``latency``, ``enforce_rate_limits``, ``enforce_permissions``.
* waiting: ``wait_for / wait_for_call / wait_connected``; glue: ``redirect_discordpy``, ``running_client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import math
import re
import secrets
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

import yarl
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

__all__ = [
    "FakeDiscord",
    "RestCall",
    "FailRule",
    "GatewayFrame",
    "InteractionRecord",
    "Perm",
    "Intent",
    "redirect_discordpy",
    "running_client",
]

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


def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Content-Type must be exactly "application/json": discord.py's json_or_text() compares the header
    # verbatim and returns a str for "application/json; charset=utf-8" (what web.json_response sends).
    resp = web.Response(status=status, body=json.dumps(data).encode(), headers=dict(headers or {}))
    resp.headers["Content-Type"] = "application/json"
    return resp


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


class FakeDiscord:
    """Fake Discord REST + gateway server on 127.0.0.1 with a random port.

    Typical use::

        async with FakeDiscord() as fake:
            fake.add_guild(1, "Guild")
            fake.add_channel(1, 10, "general")
            fake.add_member(1, 42, "alice")
            with redirect_discordpy(fake):
                client = discord.Client(intents=..., guild_ready_timeout=0.1)
                async with running_client(fake, client):
                    await fake.send_message(10, 42, "hello", mentions_bot=True)
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_id: int = 900000000000000001,
        bot_username: str = "chatbots",
        application_id: int | None = None,
        heartbeat_interval_ms: int = 41250,
        compress_frames: bool = True,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.application_id = application_id if application_id is not None else bot_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: Honour ``compress=zlib-stream`` in the gateway URL like Discord does (binary frames with
        #: Z_SYNC_FLUSH). Other compression requests (zstd-stream) fall back to plain text frames.
        self.compress_frames = compress_frames
        #: Close IDENTIFY with 4014 when it asks for a privileged intent. True = all privileged intents
        #: (message_content, members, presences); an int = a custom mask of refused bits.
        self.refuse_privileged: bool | int = False
        #: Seconds added to every REST call (for benchmarks).
        self.latency: float = 0.0
        #: Really answer 429 when a bucket is exhausted (otherwise headers never show 0 remaining).
        self.enforce_rate_limits = False
        #: (limit, per seconds) per route name; everything else uses ``default_rate_limit``.
        self.rate_limits: dict[str, tuple[int, float]] = {
            "messages.create": (5, 5.0),
            "messages.edit": (5, 5.0),
            "messages.delete": (5, 5.0),
        }
        self.default_rate_limit: tuple[int, float] = (50, 1.0)
        #: Check the bot's channel permissions on REST calls (403 50001 / 50013 like Discord).
        self.enforce_permissions = True
        #: Echo the bot's own REST-created/edited messages back over the gateway, as Discord does.
        self.echo_bot_messages = True
        #: Interactions must be acknowledged within this many seconds or the callback gets 10062.
        self.interaction_ack_timeout = 3.0
        #: Users who do not accept DMs: POST to their DM channel fails with 50007.
        self.dms_closed: set[int] = set()

        self.calls: list[RestCall] = []
        self.gateway_log: list[GatewayFrame] = []
        self.connections: list[_Conn] = []
        self.dropped_events: list[tuple[str, dict[str, Any]]] = []
        #: Exceptions raised inside the fake's own handlers (answered with 501); should stay empty.
        self.internal_errors: list[BaseException] = []
        self.interactions: dict[int, InteractionRecord] = {}

        self._ids = _Snowflakes()
        self._users: dict[int, dict[str, Any]] = {}
        self._guilds: dict[int, _Guild] = {}
        self._channel_guild: dict[int, int | None] = {}
        self._dm_by_user: dict[int, int] = {}
        self._dm_channels: dict[int, dict[str, Any]] = {}
        self._messages: dict[int, dict[str, Any]] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._deleted: set[int] = set()
        self._content_history: dict[int, list[str]] = {}
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._commands: dict[int | None, dict[tuple[str, int], dict[str, Any]]] = {}
        self._fail_rules: list[FailRule] = []
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (window_end, used)
        self._session: _Session | None = None
        self._sessions: dict[str, _Session] = {}
        self._ever_identified = False

        self._cond: asyncio.Condition | None = None
        self._gate: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._bg: set[asyncio.Task[Any]] = set()

        self._register_user(bot_id, bot_username, bot=True)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> "FakeDiscord":
        """Bind 127.0.0.1 on a free port and serve REST, gateway and attachment downloads."""
        self._cond = asyncio.Condition()
        self._gate = asyncio.Event()
        self._gate.set()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", r"/api/v{version:\d+}/{tail:.*}", self._handle_rest)
        app.router.add_get("/attachments/{tail:.*}", self._handle_cdn)
        app.router.add_get("/", self._handle_gateway)
        app.router.add_get("/resume", self._handle_gateway)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Close every gateway socket and the HTTP server."""
        if self._gate is not None:
            self._gate.set()
        for conn in list(self.connections):
            if not conn.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake shutting down"), 1.0)
        for task in list(self._bg):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeDiscord":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        assert self._port is not None, "call start() first"
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> yarl.URL:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY``; must be a yarl.URL (discord.py calls .with_query)."""
        return yarl.URL(f"ws://127.0.0.1:{self._port}/")

    @property
    def resume_gateway_url(self) -> str:
        """Sent in READY; a distinct path so tests can see the client resumed where it was told to."""
        return f"ws://127.0.0.1:{self._port}/resume"

    @property
    def bot_user(self) -> dict[str, Any]:
        return copy.deepcopy(self._users[self.bot_id])

    # ---------------------------------------------------------------- world building

    def add_user(self, user_id: int, name: str, *, bot: bool = False, global_name: str | None = None) -> dict[str, Any]:
        """Register (or rename) a user known to Discord, e.g. someone who only DMs the bot."""
        return copy.deepcopy(self._register_user(user_id, name, bot=bot, global_name=global_name))

    def add_guild(self, guild_id: int, name: str, *, owner_id: int | None = None,
                  everyone_permissions: int = Perm.DEFAULT_EVERYONE) -> None:
        """Create a guild the bot is in: @everyone role (id == guild id), the bot and the owner as members.

        Added after the client connected, the guild arrives as GUILD_CREATE (the bot "joined" it).
        """
        if owner_id is None:
            owner_id = guild_id + 1
        guild = _Guild(id=guild_id, name=name, owner_id=owner_id, joined_at=_iso())
        guild.roles[guild_id] = self._role_payload(guild_id, "@everyone", everyone_permissions, 0)
        self._guilds[guild_id] = guild
        guild.members[self.bot_id] = {"roles": [], "nick": None, "joined_at": guild.joined_at}
        if owner_id not in self._users:
            self._register_user(owner_id, f"owner{owner_id}")
        guild.members.setdefault(owner_id, {"roles": [], "nick": None, "joined_at": _iso()})
        if self._ever_identified:
            self._emit("GUILD_CREATE", self._guild_create_payload(guild), Intent.GUILDS)

    def add_role(self, guild_id: int, role_id: int, permissions: int, *, name: str | None = None,
                 position: int | None = None, managed: bool = False) -> dict[str, Any]:
        """Create or update a role; permission checks in discord.py and in the fake use it."""
        guild = self._guild(guild_id)
        existed = role_id in guild.roles
        if position is None:
            position = guild.roles[role_id]["position"] if existed else len(guild.roles)
        role = self._role_payload(role_id, name or (guild.roles[role_id]["name"] if existed else f"role{role_id}"),
                                  permissions, position, managed=managed)
        guild.roles[role_id] = role
        if self._ever_identified:
            event = "GUILD_ROLE_UPDATE" if existed else "GUILD_ROLE_CREATE"
            self._emit(event, {"guild_id": str(guild_id), "role": copy.deepcopy(role)}, Intent.GUILDS)
        return copy.deepcopy(role)

    def add_channel(self, guild_id: int, channel_id: int, name: str, type: int = 0, *,
                    parent_id: int | None = None, topic: str | None = None, owner_id: int | None = None,
                    overwrites: Sequence[Mapping[str, Any]] = (), position: int | None = None,
                    nsfw: bool = False) -> dict[str, Any]:
        """Create a guild channel: 0 text, 2 voice, 4 category, 5 news, 15 forum; 10/11/12 threads
        (``parent_id`` required; ``owner_id`` defaults to the bot). Overwrites use Discord's shape:
        ``{"id", "type": 0 role | 1 member, "allow", "deny"}`` (see also :meth:`set_overwrite`)."""
        guild = self._guild(guild_id)
        if type in THREAD_TYPES and parent_id is None:
            raise ValueError("threads need parent_id")
        if position is None:
            position = sum(1 for c in guild.channels.values() if c["type"] not in THREAD_TYPES)
        if type in THREAD_TYPES:
            data = self._thread_payload(guild_id, channel_id, name, type, parent_id, owner_id or self.bot_id)
        else:
            data = {
                "id": str(channel_id), "type": type, "guild_id": str(guild_id), "name": name,
                "position": position, "permission_overwrites": [self._overwrite(o) for o in overwrites],
                "parent_id": None if parent_id is None else str(parent_id), "nsfw": nsfw, "flags": 0,
            }
            if type in (0, 5, 15):
                data.update({"topic": topic, "last_message_id": None, "rate_limit_per_user": 0,
                             "default_auto_archive_duration": 1440, "default_thread_rate_limit_per_user": 0})
            if type == 2:
                data.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None, "last_message_id": None,
                             "rate_limit_per_user": 0, "video_quality_mode": 1})
            if type == 15:
                data.update({"available_tags": [], "default_reaction_emoji": None, "default_sort_order": None,
                             "default_forum_layout": 0})
        guild.channels[channel_id] = data
        self._channel_guild[channel_id] = guild_id
        self._channel_messages.setdefault(channel_id, [])
        if self._ever_identified:
            if type in THREAD_TYPES:
                self._emit("THREAD_CREATE", {**copy.deepcopy(data), "newly_created": True}, Intent.GUILDS)
            else:
                self._emit("CHANNEL_CREATE", copy.deepcopy(data), Intent.GUILDS)
        return copy.deepcopy(data)

    def set_overwrite(self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0,
                      member: bool = False) -> None:
        """Set a permission overwrite on a guild channel (role unless ``member``); emits CHANNEL_UPDATE."""
        data = self._guild_channel(channel_id)
        ows = [o for o in data["permission_overwrites"] if int(o["id"]) != target_id]
        ows.append(self._overwrite({"id": target_id, "type": 1 if member else 0, "allow": allow, "deny": deny}))
        data["permission_overwrites"] = ows
        if self._ever_identified:
            self._emit("CHANNEL_UPDATE", copy.deepcopy(data), Intent.GUILDS)

    def add_member(self, guild_id: int, user_id: int, name: str | None = None, roles: Sequence[int] = (), *,
                   bot: bool = False, nick: str | None = None) -> dict[str, Any]:
        """Add (or update) a guild member; roles are role ids (create them with :meth:`add_role`)."""
        guild = self._guild(guild_id)
        if user_id not in self._users or name is not None:
            self._register_user(user_id, name or f"user{user_id}", bot=bot)
        for role_id in roles:
            if role_id not in guild.roles:
                raise KeyError(f"role {role_id} not in guild {guild_id}; call add_role first")
        existed = user_id in guild.members
        joined = guild.members[user_id]["joined_at"] if existed else _iso()
        guild.members[user_id] = {"roles": list(roles), "nick": nick, "joined_at": joined}
        payload = self._member_payload(guild, user_id)
        if self._ever_identified:
            event = "GUILD_MEMBER_UPDATE" if existed else "GUILD_MEMBER_ADD"
            self._emit(event, {**copy.deepcopy(payload), "guild_id": str(guild_id)}, Intent.GUILD_MEMBERS)
        return payload

    def dm_channel(self, user_id: int) -> int:
        """Id of the DM channel between the bot and ``user_id`` (created on first use)."""
        if user_id not in self._users:
            self._register_user(user_id, f"user{user_id}")
        if user_id not in self._dm_by_user:
            cid = self._ids.next()
            self._dm_by_user[user_id] = cid
            self._dm_channels[cid] = {"id": str(cid), "type": 1, "last_message_id": None, "flags": 0,
                                      "recipients": [self._user_payload(user_id)]}
            self._channel_guild[cid] = None
            self._channel_messages.setdefault(cid, [])
        return self._dm_by_user[user_id]

    def permissions_for(self, channel_id: int, user_id: int) -> int:
        """Effective permissions of a member in a guild channel (Discord's algorithm, with overwrites)."""
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is None:
            return Perm.ALL if channel_id in self._dm_channels else 0
        guild = self._guilds[guild_id]
        channel = guild.channels[channel_id]
        if channel["type"] in THREAD_TYPES:
            channel = guild.channels.get(int(channel["parent_id"]), channel)
        base = self._base_permissions(guild, user_id)
        if base & Perm.ADMINISTRATOR:
            return Perm.ALL
        perms = base
        member = guild.members.get(user_id, {"roles": []})
        ows = {(int(o["id"]), o["type"]): o for o in channel.get("permission_overwrites", [])}
        everyone = ows.get((guild.id, 0))
        if everyone:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for role_id in member["roles"]:
            o = ows.get((role_id, 0))
            if o:
                allow |= int(o["allow"])
                deny |= int(o["deny"])
        perms = (perms & ~deny) | allow
        o = ows.get((user_id, 1))
        if o:
            perms = (perms & ~int(o["deny"])) | int(o["allow"])
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        return perms

    # ---------------------------------------------------------------- inspection

    def calls_matching(self, method: str, path_substring: str = "", *, status: int | None = None) -> list[RestCall]:
        """REST calls with this method ("*" for any) whose path contains ``path_substring``."""
        return [c for c in self.calls if method in ("*", c.method) and path_substring in c.path
                and (status is None or c.status == status)]

    def messages(self, channel_id: int, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every message in a channel, oldest first, as REST message objects (current content)."""
        ids = self._channel_messages.get(channel_id, [])
        return [self._render(mid) for mid in ids if include_deleted or mid not in self._deleted]

    def bot_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a channel, oldest first, with their final content after edits
        (interaction responses included; ephemeral ones carry flag 64)."""
        return [m for m in self.messages(channel_id) if int(m["author"]["id"]) == self.bot_id]

    def bot_contents(self, channel_id: int) -> list[str]:
        """Just the visible text of :meth:`bot_messages`."""
        return [m["content"] for m in self.bot_messages(channel_id)]

    def get_message(self, message_id: int) -> dict[str, Any] | None:
        """A message by id (None if unknown); deleted messages are still returned."""
        return self._render(message_id) if message_id in self._messages else None

    def content_history(self, message_id: int) -> list[str]:
        """Every content a message had, creation first, one entry per edit (streaming tests)."""
        return list(self._content_history.get(message_id, []))

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """Application commands last synced globally (None) or to a guild."""
        return copy.deepcopy(list(self._commands.get(guild_id, {}).values()))

    def interaction(self, interaction_id: int) -> InteractionRecord:
        return self.interactions[interaction_id]

    def gateway_received(self, op: int | None = None) -> list[GatewayFrame]:
        """Gateway payloads the client sent (e.g. op 3 presence, op 8 member requests)."""
        return [f for f in self.gateway_log if f.direction == "recv" and (op is None or f.op == op)]

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session else None

    @property
    def identify_count(self) -> int:
        return sum(1 for f in self.gateway_received(2))

    @property
    def resume_count(self) -> int:
        return sum(1 for f in self.gateway_received(6))

    @property
    def is_connected(self) -> bool:
        s = self._session
        return bool(s and s.conn and s.conn.ready and not s.conn.closed)

    # ---------------------------------------------------------------- waiting

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy and return its value.

        Re-evaluated whenever the fake records a REST call or a gateway frame changes state, so
        tests never sleep. Only the fake's state wakes it: to wait for something that happens
        inside the client (a handler finishing), use ``client.wait_for`` or an asyncio.Event.
        On timeout raise AssertionError with the recent calls, for a useful failure.
        """
        assert self._cond is not None, "call start() first"
        value = predicate()
        if value:
            return value
        cond = self._cond

        async def _loop() -> Any:
            async with cond:
                while True:
                    result = predicate()
                    if result:
                        return result
                    await cond.wait()

        try:
            return await asyncio.wait_for(_loop(), timeout)
        except asyncio.TimeoutError:
            recent = "\n  ".join(str(c) for c in self.calls[-20:]) or "(none)"
            raise AssertionError(
                f"FakeDiscord.wait_for timed out after {timeout}s waiting for {what or predicate!r}\n"
                f"gateway connected={self.is_connected} identifies={self.identify_count} "
                f"resumes={self.resume_count}\nrecent REST calls:\n  {recent}"
            ) from None

    async def wait_for_call(self, method: str, path_substring: str = "", count: int = 1, timeout: float = 5.0, *,
                            status: int | None = None) -> list[RestCall]:
        """Wait until at least ``count`` matching REST calls happened; return all matching calls."""
        return await self.wait_for(
            lambda: (lambda m: m if len(m) >= count else None)(self.calls_matching(method, path_substring, status=status)),
            timeout, what=f"{count}x {method} *{path_substring}*")

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a client has identified (or resumed) and everything queued was written to it."""
        def ok() -> bool:
            s = self._session
            return bool(s and s.conn and s.conn.ready and not s.conn.closed and s.conn.cursor >= len(s.history))
        await self.wait_for(ok, timeout, what="a ready gateway connection")

    async def _notify(self) -> None:
        if self._cond is None:
            return
        async with self._cond:
            self._cond.notify_all()

    def _notify_soon(self) -> None:
        if self._cond is not None:
            self._spawn(self._notify())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    # ---------------------------------------------------------------- fault injection

    def fail_next(self, method: str, path_substring: str, status: int = 429, retry_after: float = 0.05,
                  global_: bool = False, times: int | None = 1, code: int | None = None, *,
                  message: str | None = None, via: bool = True) -> FailRule:
        """Make the next ``times`` matching REST calls fail (``times=None``: until :meth:`clear_failures`).

        ``method`` may be "*"; ``path_substring`` is matched against the path without "/api/v10"
        and without the query string, e.g. "/messages/" or f"/channels/{cid}/messages".

        429 carries Discord's body ``{message, retry_after, global}`` plus Retry-After / X-RateLimit-*
        headers and ``Via`` (discord.py only retries a 429 that has Via; ``via=False`` simulates a
        Cloudflare ban). 403 defaults to ``{"message": "Missing Permissions", "code": 50013}``.
        Note discord.py sleeps 1 s, 3 s, ... before retrying 500/502/504.
        """
        rule = FailRule(method.upper(), path_substring, status, retry_after, global_, times, code, message, via)
        self._fail_rules.append(rule)
        return rule

    def clear_failures(self) -> None:
        self._fail_rules.clear()

    # ---------------------------------------------------------------- gateway control

    async def disconnect_gateway(self, code: int | None = 4000, reason: str = "") -> None:
        """Drop the current gateway socket (``code=None``: abort TCP without a close frame).

        The session survives: a resumable code makes discord.py RESUME at ``resume_gateway_url`` and
        the fake replays every dispatch it missed, then sends RESUMED.
        """
        s = self._session
        conn = s.conn if s else None
        if conn is None:
            return
        self._detach(conn)
        if code is None:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        else:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code, message=reason.encode())
        await self._notify()

    def hold_reconnects(self) -> None:
        """Park new gateway connections before the handshake until :meth:`release_reconnects`."""
        assert self._gate is not None
        self._gate.clear()

    def release_reconnects(self) -> None:
        assert self._gate is not None
        self._gate.set()

    @contextlib.asynccontextmanager
    async def gateway_offline(self, code: int = 4000) -> AsyncIterator[None]:
        """Disconnect and keep the client out while the block runs; events emitted inside are queued
        in the session and delivered when the client resumes after the block."""
        self.hold_reconnects()
        try:
            await self.disconnect_gateway(code)
            yield
        finally:
            self.release_reconnects()

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT (discord.py closes and resumes)."""
        await self._send_op(7, None)

    async def invalidate_session(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; unresumable forces a fresh IDENTIFY."""
        if self._session and not resumable:
            self._session.invalid = True
        await self._send_op(9, resumable)

    async def dispatch(self, event: str, data: dict[str, Any], intent: int = 0) -> int | None:
        """Send any DISPATCH event (escape hatch for events without a helper); returns its seq."""
        seq = self._emit(event, data, intent)
        await self._flush(seq)
        return seq

    # ---------------------------------------------------------------- dispatch helpers

    async def send_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        mentions_bot: bool = False,
        mentions: Sequence[int] = (),
        mention_roles: Sequence[int] = (),
        reply_to: int | None = None,
        reply_mention: bool = True,
        message_type: int | None = None,
        guild_id: int | None = _AUTO,
        embeds: Sequence[dict[str, Any]] | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
        webhook_id: int | None = None,
        flags: int = 0,
    ) -> dict[str, Any]:
        """Dispatch MESSAGE_CREATE as if ``author_id`` typed ``content`` in ``channel_id``.

        ``mentions_bot`` prepends ``<@bot_id>`` (what typing @bot produces) and lists the bot in
        ``mentions``. ``reply_to`` makes a type-19 reply with ``message_reference`` and
        ``referenced_message``; the replied-to author is mentioned unless ``reply_mention=False``.
        Guild messages carry ``member``; DM channels (see :meth:`dm_channel`) carry no guild_id.
        ``attachments``: ``[{"filename", "content": bytes|str, "content_type"?}]`` served by the fake.
        Returns the dispatched payload.
        """
        if author_id not in self._users:
            self._register_user(author_id, f"user{author_id}")
        if guild_id is _AUTO:
            guild_id = self._channel_guild.get(channel_id)
        self._known_channel(channel_id)
        if guild_id is not None and author_id not in self._guilds[guild_id].members and webhook_id is None:
            self._guilds[guild_id].members[author_id] = {"roles": [], "nick": None, "joined_at": _iso()}
        if mentions_bot and f"<@{self.bot_id}>" not in content and f"<@!{self.bot_id}>" not in content:
            content = f"<@{self.bot_id}> {content}".rstrip()
        mention_ids = list(mentions)
        if mentions_bot:
            mention_ids.append(self.bot_id)
        if reply_to is not None and reply_mention:
            ref = self._messages.get(reply_to)
            if ref is not None:
                mention_ids.append(int(ref["author"]["id"]))
        msg = self._create_message(
            channel_id, author_id, content, type_=message_type if message_type is not None else (19 if reply_to else 0),
            mention_ids=mention_ids, mention_roles=mention_roles, reply_to=reply_to, embeds=embeds,
            attachments=attachments, webhook_id=webhook_id, flags=flags, parse_mentions=True)
        payload = self._gateway_message(msg)
        seq = self._emit("MESSAGE_CREATE", payload, self._message_intent(channel_id), content_gated=True)
        await self._flush(seq)
        return payload

    async def send_dm(self, user_id: int, content: str, **kwargs: Any) -> dict[str, Any]:
        """A DM from ``user_id`` to the bot (creates the DM channel)."""
        return await self.send_message(self.dm_channel(user_id), user_id, content, **kwargs)

    async def send_message_update(self, channel_id: int, message_id: int, content: str | None = None, *,
                                  embeds: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Edit a stored message (as its author did) and dispatch MESSAGE_UPDATE with the full message."""
        msg = self._message(channel_id, message_id)
        self._apply_edit(msg, {"content": content} if content is not None else {}, embeds=embeds)
        payload = self._gateway_message(msg)
        seq = self._emit("MESSAGE_UPDATE", payload, self._message_intent(channel_id), content_gated=True)
        await self._flush(seq)
        return payload

    async def send_message_delete(self, channel_id: int, message_id: int) -> None:
        """Delete a stored message and dispatch MESSAGE_DELETE."""
        self._message(channel_id, message_id)
        self._deleted.add(message_id)
        seq = self._emit("MESSAGE_DELETE", self._delete_payload(channel_id, message_id), self._message_intent(channel_id))
        await self._flush(seq)

    async def send_reaction_add(self, channel_id: int, message_id: int, user_id: int, emoji: str) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_ADD; ``emoji`` is unicode ("👍") or custom ("name:id" / "<:name:id>")."""
        msg = self._message(channel_id, message_id)
        self._add_reaction(msg, emoji, user_id)
        payload = self._reaction_payload(channel_id, message_id, user_id, emoji)
        payload["message_author_id"] = msg["author"]["id"]
        payload["burst_colors"] = []
        seq = self._emit("MESSAGE_REACTION_ADD", payload, self._reaction_intent(channel_id))
        await self._flush(seq)
        return payload

    async def send_reaction_remove(self, channel_id: int, message_id: int, user_id: int, emoji: str) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_REMOVE."""
        msg = self._message(channel_id, message_id)
        self._remove_reaction(msg, emoji, user_id)
        payload = self._reaction_payload(channel_id, message_id, user_id, emoji)
        payload.pop("member", None)
        seq = self._emit("MESSAGE_REACTION_REMOVE", payload, self._reaction_intent(channel_id))
        await self._flush(seq)
        return payload

    async def send_guild_delete(self, guild_id: int, *, unavailable: bool = False) -> None:
        """GUILD_DELETE: the bot was removed (default; the guild is forgotten) or an outage (unavailable)."""
        payload: dict[str, Any] = {"id": str(guild_id)}
        if unavailable:
            payload["unavailable"] = True
            self._guilds[guild_id].unavailable = True
        else:
            guild = self._guilds.pop(guild_id)
            for cid in guild.channels:
                self._channel_guild.pop(cid, None)
        seq = self._emit("GUILD_DELETE", payload, Intent.GUILDS)
        await self._flush(seq)

    async def send_interaction(
        self,
        name: str,
        *,
        channel_id: int,
        user_id: int,
        options: Mapping[str, Any] | Sequence[dict[str, Any]] | None = None,
        group: str | None = None,
        subcommand: str | None = None,
        guild_id: int | None = _AUTO,
        permissions: int | None = None,
        command_id: int | None = None,
        command_guild_id: int | None = _AUTO,
        command_type: int = 1,
        interaction_type: int = 2,
        resolved: dict[str, Any] | None = None,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        """Dispatch INTERACTION_CREATE for an application command, as when a user runs a slash command.

        ``name`` may carry the path: ``"chatbot model set"`` == name/group/subcommand. ``options`` is a
        ``{name: value}`` mapping (str/int/float/bool typed automatically, ``(type, value)`` tuples for
        others) or Discord's raw option list. ``member.permissions`` is the user's effective channel
        permissions unless ``permissions`` overrides it. ``data.guild_id`` is set when the command was
        synced to that guild (that is how discord.py's tree finds guild commands).
        Returns the payload; the server side is ``fake.interactions[int(payload["id"])]``.
        """
        parts = name.split()
        if len(parts) == 2:
            name, subcommand = parts
        elif len(parts) == 3:
            name, group, subcommand = parts
        if user_id not in self._users:
            self._register_user(user_id, f"user{user_id}")
        if guild_id is _AUTO:
            guild_id = self._channel_guild.get(channel_id)
        self._known_channel(channel_id)
        leaf = self._build_options(options)
        if subcommand is not None:
            leaf = [{"type": 1, "name": subcommand, "options": leaf}]
            if group is not None:
                leaf = [{"type": 2, "name": group, "options": leaf}]
        if command_guild_id is _AUTO:
            command_guild_id = guild_id if guild_id is not None and (name, command_type) in self._commands.get(guild_id, {}) else None
        cmd = self._commands.get(command_guild_id, {}).get((name, command_type))
        if command_id is None:
            command_id = int(cmd["id"]) if cmd else self._ids.next()
        data: dict[str, Any] = {"id": str(command_id), "name": name, "type": command_type}
        if leaf:
            data["options"] = leaf
        if command_guild_id is not None:
            data["guild_id"] = str(command_guild_id)
        if resolved:
            data["resolved"] = resolved
        iid = self._ids.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.application_id), "type": interaction_type, "data": data,
            "channel_id": str(channel_id), "channel": self._interaction_channel(channel_id, user_id),
            "token": token, "version": 1, "locale": locale, "entitlements": [], "entitlement_sku_ids": [],
            "attachment_size_limit": 10485760,
        }
        if guild_id is not None:
            guild = self._guilds[guild_id]
            guild.members.setdefault(user_id, {"roles": [], "nick": None, "joined_at": _iso()})
            perms = permissions if permissions is not None else self.permissions_for(channel_id, user_id)
            member = self._member_payload(guild, user_id)
            member["permissions"] = str(perms)
            payload.update({
                "guild_id": str(guild_id), "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                "guild_locale": "en-US", "member": member, "context": 0,
                "authorizing_integration_owners": {"0": str(guild_id)},
                "app_permissions": str(self.permissions_for(channel_id, self.bot_id)),
            })
        else:
            payload.update({"user": self._user_payload(user_id), "context": 1,
                            "authorizing_integration_owners": {"0": "0"},
                            "app_permissions": str(Perm.ALL & ~Perm.ADMINISTRATOR)})
        full = " ".join(p for p in (name, group, subcommand) if p)
        self.interactions[iid] = InteractionRecord(iid, token, full, channel_id, guild_id, user_id,
                                                   copy.deepcopy(payload))
        seq = self._emit("INTERACTION_CREATE", payload, 0)
        await self._flush(seq)
        return payload

    # ---------------------------------------------------------------- payload builders

    def _register_user(self, user_id: int, name: str, *, bot: bool = False, global_name: str | None = None) -> dict[str, Any]:
        user = {
            "id": str(user_id), "username": name, "discriminator": "0", "global_name": global_name,
            "avatar": None, "bot": bot, "system": False, "public_flags": 0, "flags": 0, "banner": None,
            "accent_color": None, "avatar_decoration_data": None, "collectibles": None, "primary_guild": None,
        }
        self._users[user_id] = user
        return user

    def _user_payload(self, user_id: int) -> dict[str, Any]:
        return copy.deepcopy(self._users[user_id])

    def _me_payload(self) -> dict[str, Any]:
        me = self._user_payload(self.bot_id)
        me.update({"verified": True, "mfa_enabled": False, "locale": "en-US", "email": None, "premium_type": 0})
        return me

    @staticmethod
    def _role_payload(role_id: int, name: str, permissions: int, position: int, *, managed: bool = False) -> dict[str, Any]:
        return {
            "id": str(role_id), "name": name, "color": 0, "colors": {"primary_color": 0, "secondary_color": None,
                                                                     "tertiary_color": None},
            "hoist": False, "icon": None, "unicode_emoji": None, "position": position,
            "permissions": str(permissions), "managed": managed, "mentionable": False, "flags": 0,
        }

    @staticmethod
    def _overwrite(o: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": str(o["id"]), "type": int(o.get("type", 0)), "allow": str(int(o.get("allow", 0))),
                "deny": str(int(o.get("deny", 0)))}

    def _thread_payload(self, guild_id: int, thread_id: int, name: str, type_: int, parent_id: int | None,
                        owner_id: int) -> dict[str, Any]:
        return {
            "id": str(thread_id), "type": type_, "guild_id": str(guild_id), "parent_id": str(parent_id),
            "owner_id": str(owner_id), "name": name, "last_message_id": None, "rate_limit_per_user": 0,
            "message_count": 0, "member_count": 1, "total_message_sent": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {"archived": False, "auto_archive_duration": 1440, "archive_timestamp": _iso(),
                                "locked": False, "invitable": True, "create_timestamp": _iso()},
            "member": {"id": str(thread_id), "user_id": str(self.bot_id), "join_timestamp": _iso(), "flags": 1},
        }

    def _member_payload(self, guild: _Guild, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        m = guild.members[user_id]
        data: dict[str, Any] = {
            "roles": [str(r) for r in m["roles"]], "nick": m.get("nick"), "avatar": None, "banner": None,
            "joined_at": m["joined_at"], "premium_since": None, "deaf": False, "mute": False, "flags": 0,
            "pending": False, "communication_disabled_until": None, "avatar_decoration_data": None,
            "collectibles": None,
        }
        if with_user:
            data["user"] = self._user_payload(user_id)
        return data

    def _base_permissions(self, guild: _Guild, user_id: int) -> int:
        if user_id == guild.owner_id:
            return Perm.ALL
        perms = int(guild.roles[guild.id]["permissions"])
        for role_id in guild.members.get(user_id, {"roles": []})["roles"]:
            perms |= int(guild.roles[role_id]["permissions"])
        return Perm.ALL if perms & Perm.ADMINISTRATOR else perms

    def _guild_create_payload(self, guild: _Guild) -> dict[str, Any]:
        s = self._session
        intents = s.intents if s else 0
        # Like Discord: without GUILD_PRESENCES only the bot's own member is included; clients with
        # GUILD_MEMBERS then request the rest (op 8 -> GUILD_MEMBERS_CHUNK).
        if intents & Intent.GUILD_PRESENCES:
            member_ids = list(guild.members)
        else:
            member_ids = [self.bot_id]
        channels = [copy.deepcopy(c) for c in guild.channels.values() if c["type"] not in THREAD_TYPES]
        threads = [copy.deepcopy(c) for c in guild.channels.values() if c["type"] in THREAD_TYPES
                   and not c["thread_metadata"]["archived"]]
        for c in channels + threads:
            c.pop("guild_id", None)  # GUILD_CREATE omits guild_id inside channels
        return {
            "id": str(guild.id), "name": guild.name, "icon": None, "icon_hash": None, "splash": None,
            "discovery_splash": None, "owner_id": str(guild.owner_id), "afk_channel_id": None, "afk_timeout": 300,
            "widget_enabled": False, "widget_channel_id": None, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [copy.deepcopy(r) for r in guild.roles.values()], "emojis": [], "stickers": [],
            "features": [], "mfa_level": 0, "application_id": None, "system_channel_id": None,
            "system_channel_flags": 0, "rules_channel_id": None, "max_presences": None, "max_members": 500000,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US", "public_updates_channel_id": None,
            "max_video_channel_users": 25, "max_stage_video_channel_users": 50, "nsfw_level": 0, "nsfw": False,
            "premium_progress_bar_enabled": False, "safety_alerts_channel_id": None, "incidents_data": None,
            "joined_at": guild.joined_at, "large": len(guild.members) >= 250, "unavailable": False,
            "member_count": len(guild.members), "voice_states": [], "presences": [],
            "members": [self._member_payload(guild, uid) for uid in member_ids],
            "channels": channels, "threads": threads, "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "embedded_activities": [], "lazy": True, "version": int(time.time() * 1000),
            "application_command_counts": {}, "hub_type": None, "latest_onboarding_question_id": None,
            "home_header": None,
        }

    def _channel_payload(self, channel_id: int) -> dict[str, Any]:
        if channel_id in self._dm_channels:
            return copy.deepcopy(self._dm_channels[channel_id])
        return copy.deepcopy(self._guild_channel(channel_id))

    def _interaction_channel(self, channel_id: int, user_id: int) -> dict[str, Any]:
        ch = self._channel_payload(channel_id)
        if channel_id not in self._dm_channels:
            ch["permissions"] = str(self.permissions_for(channel_id, user_id))
        return ch

    def _build_options(self, options: Mapping[str, Any] | Sequence[dict[str, Any]] | None) -> list[dict[str, Any]]:
        if not options:
            return []
        if not isinstance(options, Mapping):
            return [copy.deepcopy(o) for o in options]
        out = []
        for key, value in options.items():
            if isinstance(value, tuple):
                type_, value = value
            elif isinstance(value, bool):
                type_ = 5
            elif isinstance(value, int):
                type_ = 4
            elif isinstance(value, float):
                type_ = 10
            else:
                type_ = 3
            out.append({"type": type_, "name": key, "value": value})
        return out

    # ---------------------------------------------------------------- message model

    def _known_channel(self, channel_id: int) -> None:
        if channel_id not in self._channel_guild:
            raise KeyError(f"unknown channel {channel_id}; call add_channel() or dm_channel() first")

    def _guild(self, guild_id: int) -> _Guild:
        try:
            return self._guilds[guild_id]
        except KeyError:
            raise KeyError(f"unknown guild {guild_id}; call add_guild() first") from None

    def _guild_channel(self, channel_id: int) -> dict[str, Any]:
        gid = self._channel_guild.get(channel_id)
        if gid is None or gid not in self._guilds:
            raise KeyError(f"unknown guild channel {channel_id}")
        return self._guilds[gid].channels[channel_id]

    def _message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        msg = self._messages.get(message_id)
        if msg is None or int(msg["channel_id"]) != channel_id:
            raise KeyError(f"unknown message {message_id} in channel {channel_id}")
        return msg

    def _message_intent(self, channel_id: int) -> int:
        return Intent.GUILD_MESSAGES if self._channel_guild.get(channel_id) is not None else Intent.DIRECT_MESSAGES

    def _reaction_intent(self, channel_id: int) -> int:
        return (Intent.GUILD_MESSAGE_REACTIONS if self._channel_guild.get(channel_id) is not None
                else Intent.DIRECT_MESSAGE_REACTIONS)

    def _store_attachments(self, channel_id: int, attachments: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        out = []
        for a in attachments or ():
            aid = self._ids.next()
            content = a.get("content", b"")
            if isinstance(content, str):
                content = content.encode()
            filename = a.get("filename", "file.bin")
            ctype = a.get("content_type") or ("text/plain; charset=utf-8" if filename.endswith(".txt") else "application/octet-stream")
            path = f"{channel_id}/{aid}/{urllib.parse.quote(filename)}"
            self._blobs[path] = (content, ctype)
            url = f"{self.base_url}/attachments/{path}"
            out.append({"id": str(aid), "filename": filename, "size": len(content), "url": url, "proxy_url": url,
                        "content_type": ctype, "description": a.get("description"), "flags": 0})
        return out

    def _create_message(
        self, channel_id: int, author_id: int, content: str, *, type_: int = 0,
        mention_ids: Sequence[int] = (), mention_roles: Sequence[int] = (), reply_to: int | None = None,
        embeds: Sequence[dict[str, Any]] | None = None, attachments: Sequence[Mapping[str, Any]] | None = None,
        stored_attachments: list[dict[str, Any]] | None = None, webhook_id: int | None = None, flags: int = 0,
        components: Sequence[dict[str, Any]] | None = None, nonce: Any = None, tts: bool = False,
        parse_mentions: bool = False, interaction: InteractionRecord | None = None, message_id: int | None = None,
    ) -> dict[str, Any]:
        mid = message_id or self._ids.next()
        ids: list[int] = []
        for uid in list(mention_ids) + ([int(x) for x in re.findall(r"<@!?(\d+)>", content)] if parse_mentions else []):
            if uid in self._users and uid not in ids:
                ids.append(uid)
        roles = list(mention_roles) + ([int(x) for x in re.findall(r"<@&(\d+)>", content)] if parse_mentions else [])
        msg: dict[str, Any] = {
            "id": str(mid), "channel_id": str(channel_id), "type": type_, "content": content,
            "author": self._user_payload(author_id), "timestamp": _iso_from_snowflake(mid), "edited_timestamp": None,
            "tts": tts, "mention_everyone": parse_mentions and ("@everyone" in content or "@here" in content),
            "mentions": [self._user_payload(u) for u in ids], "mention_roles": [str(r) for r in dict.fromkeys(roles)],
            "attachments": stored_attachments if stored_attachments is not None else self._store_attachments(channel_id, attachments),
            "embeds": [copy.deepcopy(e) for e in embeds or ()], "pinned": False, "flags": flags,
            "components": [copy.deepcopy(c) for c in components or ()],
        }
        if nonce is not None:
            msg["nonce"] = nonce
        if webhook_id is not None:
            msg["webhook_id"] = str(webhook_id)
        if reply_to is not None:
            ref = self._messages[reply_to]
            gid = self._channel_guild.get(int(ref["channel_id"]))
            msg["message_reference"] = {"type": 0, "message_id": str(reply_to), "channel_id": ref["channel_id"]}
            if gid is not None:
                msg["message_reference"]["guild_id"] = str(gid)
        if interaction is not None:
            msg["application_id"] = str(self.application_id)
            msg["webhook_id"] = str(self.application_id)
            user = self._user_payload(interaction.user_id)
            meta: dict[str, Any] = {
                "id": str(interaction.id), "type": 2, "user": user, "name": interaction.name, "command_type": 1,
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
            }
            if interaction.original_message_id is not None and interaction.original_message_id != mid:
                meta["original_response_message_id"] = str(interaction.original_message_id)
            msg["interaction_metadata"] = meta
            msg["interaction"] = {"id": str(interaction.id), "type": 2, "name": interaction.name, "user": user}
        gid = self._channel_guild.get(channel_id)
        if gid is not None and gid in self._guilds:
            ch = self._guilds[gid].channels[channel_id]
            if ch["type"] in THREAD_TYPES:
                msg["position"] = ch["total_message_sent"]
                ch["message_count"] += 1
                ch["total_message_sent"] += 1
            ch["last_message_id"] = str(mid)
        elif channel_id in self._dm_channels:
            self._dm_channels[channel_id]["last_message_id"] = str(mid)
        self._messages[mid] = msg
        self._channel_messages.setdefault(channel_id, []).append(mid)
        self._content_history[mid] = [content]
        return msg

    def _render(self, message_id: int, *, with_reference: bool = True) -> dict[str, Any]:
        msg = copy.deepcopy(self._messages[message_id])
        ref = msg.get("message_reference")
        if with_reference and ref and msg["type"] == 19:
            rid = int(ref["message_id"])
            msg["referenced_message"] = (None if rid in self._deleted or rid not in self._messages
                                         else self._render(rid, with_reference=False))
        return msg

    def _gateway_message(self, msg: dict[str, Any]) -> dict[str, Any]:
        """REST message + what MESSAGE_CREATE/UPDATE adds in guilds: guild_id, member, mentions[].member."""
        payload = self._render(int(msg["id"]))
        gid = self._channel_guild.get(int(msg["channel_id"]))
        if gid is not None and gid in self._guilds:
            guild = self._guilds[gid]
            payload["guild_id"] = str(gid)
            author_id = int(msg["author"]["id"])
            if "webhook_id" not in msg and author_id in guild.members:
                payload["member"] = self._member_payload(guild, author_id, with_user=False)
            for mention in payload["mentions"]:
                uid = int(mention["id"])
                if uid in guild.members:
                    mention["member"] = self._member_payload(guild, uid, with_user=False)
            ref = payload.get("referenced_message")
            if ref and int(ref["author"]["id"]) in guild.members and "webhook_id" not in ref:
                ref["member"] = self._member_payload(guild, int(ref["author"]["id"]), with_user=False)
        return payload

    def _apply_edit(self, msg: dict[str, Any], body: Mapping[str, Any], *, embeds: Sequence[dict] | None = None) -> None:
        if "content" in body and body["content"] is not None:
            content = str(body["content"])
            msg["content"] = content
            msg["mentions"] = [self._user_payload(int(u)) for u in dict.fromkeys(re.findall(r"<@!?(\d+)>", content))
                               if int(u) in self._users]
        if embeds is not None:
            msg["embeds"] = [copy.deepcopy(e) for e in embeds]
        if "embeds" in body and body["embeds"] is not None:
            msg["embeds"] = copy.deepcopy(body["embeds"])
        if "components" in body and body["components"] is not None:
            msg["components"] = copy.deepcopy(body["components"])
        if "attachments" in body and body["attachments"] is not None:
            keep = {str(a.get("id")) for a in body["attachments"]}
            msg["attachments"] = [a for a in msg["attachments"] if a["id"] in keep]
        if "flags" in body and body["flags"] is not None:
            # only SUPPRESS_EMBEDS (1 << 2) may be toggled on edit
            msg["flags"] = (msg["flags"] & ~4) | (int(body["flags"]) & 4)
        msg["edited_timestamp"] = _iso()
        self._content_history.setdefault(int(msg["id"]), []).append(msg["content"])

    @staticmethod
    def _emoji_payload(emoji: str) -> dict[str, Any]:
        m = re.fullmatch(r"<?(a)?:?([\w~-]+):(\d+)>?", emoji)
        if m:
            return {"id": m.group(3), "name": m.group(2), "animated": bool(m.group(1))}
        return {"id": None, "name": emoji}

    def _add_reaction(self, msg: dict[str, Any], emoji: str, user_id: int) -> None:
        e = self._emoji_payload(emoji)
        reactions = msg.setdefault("reactions", [])
        for r in reactions:
            if r["emoji"].get("id") == e.get("id") and r["emoji"]["name"] == e["name"]:
                r["count"] += 1
                r["count_details"]["normal"] += 1
                r["me"] = r["me"] or user_id == self.bot_id
                return
        reactions.append({"count": 1, "count_details": {"burst": 0, "normal": 1}, "me": user_id == self.bot_id,
                          "me_burst": False, "emoji": e, "burst_colors": []})

    def _remove_reaction(self, msg: dict[str, Any], emoji: str, user_id: int) -> None:
        e = self._emoji_payload(emoji)
        for r in list(msg.get("reactions", [])):
            if r["emoji"].get("id") == e.get("id") and r["emoji"]["name"] == e["name"]:
                r["count"] -= 1
                r["count_details"]["normal"] = max(0, r["count_details"]["normal"] - 1)
                if user_id == self.bot_id:
                    r["me"] = False
                if r["count"] <= 0:
                    msg["reactions"].remove(r)

    def _reaction_payload(self, channel_id: int, message_id: int, user_id: int, emoji: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"user_id": str(user_id), "channel_id": str(channel_id),
                                   "message_id": str(message_id), "emoji": self._emoji_payload(emoji),
                                   "burst": False, "type": 0}
        gid = self._channel_guild.get(channel_id)
        if gid is not None:
            payload["guild_id"] = str(gid)
            guild = self._guilds[gid]
            if user_id in guild.members:
                payload["member"] = self._member_payload(guild, user_id)
        return payload

    def _delete_payload(self, channel_id: int, message_id: int) -> dict[str, Any]:
        payload = {"id": str(message_id), "channel_id": str(channel_id)}
        gid = self._channel_guild.get(channel_id)
        if gid is not None:
            payload["guild_id"] = str(gid)
        return payload

    # ---------------------------------------------------------------- gateway internals

    def _emit(self, event: str, data: dict[str, Any], intent: int = 0, *, content_gated: bool = False) -> int | None:
        """Queue a DISPATCH in the current session (delivered now, or replayed after RESUME).

        Returns its sequence number, or None when filtered by intents / no session exists.
        """
        s = self._session
        if s is None or s.invalid:
            self.dropped_events.append((event, data))
            return None
        if intent and not s.intents & intent:
            return None
        if content_gated and not s.intents & Intent.MESSAGE_CONTENT:
            data = self._strip_content(data)
        s.seq += 1
        frame = json.dumps({"t": event, "s": s.seq, "op": 0, "d": data}, separators=(",", ":"))
        s.history.append((s.seq, event, frame))
        self.gateway_log.append(GatewayFrame("send", 0, event, s.seq, data))
        if s.conn is not None:
            s.conn.wake.set()
        return s.seq

    def _strip_content(self, data: dict[str, Any]) -> dict[str, Any]:
        # Without the MESSAGE_CONTENT intent Discord blanks content in guild messages, except the
        # bot's own messages and messages that mention the bot.
        if "guild_id" not in data or int(data.get("author", {}).get("id", 0)) == self.bot_id:
            return data
        if any(int(m["id"]) == self.bot_id for m in data.get("mentions", [])):
            return data
        data = dict(data)
        data.update({"content": "", "embeds": [], "attachments": [], "components": []})
        data.pop("poll", None)
        return data

    async def _flush(self, seq: int | None, timeout: float = 5.0) -> None:
        """Wait until ``seq`` was written to the live socket (no-op while disconnected)."""
        s = self._session
        if seq is None or s is None:
            return

        def done() -> bool:
            conn = s.conn
            if conn is None or conn.closed or not conn.ready or self._session is not s:
                return True
            return conn.cursor > 0 and s.history[conn.cursor - 1][0] >= seq

        with contextlib.suppress(AssertionError):
            await self.wait_for(done, timeout)

    async def _send_op(self, op: int, d: Any) -> None:
        s = self._session
        if s is None or s.conn is None:
            return
        self.gateway_log.append(GatewayFrame("send", op, None, None, d))
        with contextlib.suppress(Exception):
            await s.conn.send_text(json.dumps({"op": op, "d": d, "s": None, "t": None}))

    def _detach(self, conn: _Conn) -> None:
        conn.closed = True
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None
        if conn.writer is not None:
            conn.writer.cancel()

    async def _writer(self, conn: _Conn) -> None:
        s = conn.session
        assert s is not None
        try:
            while not conn.closed:
                while conn.cursor < len(s.history) and not conn.closed:
                    _, _, frame = s.history[conn.cursor]
                    await conn.send_text(frame)
                    conn.cursor += 1
                await self._notify()
                if conn.cursor >= len(s.history):
                    conn.wake.clear()
                    await conn.wake.wait()
        except (ConnectionError, RuntimeError) as exc:  # socket went away; history stays for RESUME
            log.debug("gateway writer stopped: %r", exc)

    async def _handle_gateway(self, request: web.Request) -> web.StreamResponse:
        assert self._gate is not None
        await self._gate.wait()
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0)
        await ws.prepare(request)
        compress = self.compress_frames and request.query.get("compress") == "zlib-stream"
        conn = _Conn(ws, request, compress)
        self.connections.append(conn)
        hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ['["gateway-prd-fake-1",{"micros":0.0}]']}
        self.gateway_log.append(GatewayFrame("send", 10, None, None, hello))
        await conn.send_text(json.dumps({"t": None, "s": None, "op": 10, "d": hello}))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_gateway_payload(conn, json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                else:
                    break
        except ConnectionError:
            pass
        finally:
            self._detach(conn)
            await self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Conn, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        self.gateway_log.append(GatewayFrame("recv", op, None, None, d))
        if op == 1:
            await conn.send_text(json.dumps({"t": None, "s": None, "op": 11, "d": None}))
        elif op == 2:
            await self._on_identify(conn, d)
        elif op == 6:
            await self._on_resume(conn, d)
        elif op == 8:
            self._on_request_members(conn, d)
        await self._notify()

    async def _on_identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.ws.close(code=4005, message=b"Already authenticated.")
            return
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        refused = Intent.PRIVILEGED if self.refuse_privileged is True else int(self.refuse_privileged or 0)
        if intents & refused:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        conn.identify = d
        if self._session is not None and self._session.conn is not None and self._session.conn is not conn:
            old = self._session.conn
            self._detach(old)
            self._spawn(old.ws.close(code=4000))
        session = _Session(secrets.token_hex(16), intents, d.get("shard"))
        self._sessions[session.id] = session
        self._session = session
        self._ever_identified = True
        session.conn = conn
        conn.session = session
        ready = {
            "v": API_VERSION, "user": self._me_payload(), "user_settings": {}, "private_channels": [],
            "relationships": [], "presences": [], "guild_join_requests": [],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self._guilds.values()],
            "session_id": session.id, "session_type": "normal", "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "geo_ordered_rtc_regions": ["us-east"], "auth": {}, "_trace": ['["gateway-prd-fake-1",{"micros":0.0}]'],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        self._emit("READY", ready)
        for guild in self._guilds.values():
            if not guild.unavailable:
                self._emit("GUILD_CREATE", self._guild_create_payload(guild))
        conn.ready = True
        conn.writer = asyncio.ensure_future(self._writer(conn))

    async def _on_resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if session is None or session.invalid or session is not self._session:
            self.gateway_log.append(GatewayFrame("send", 9, None, None, False))
            await conn.send_text(json.dumps({"t": None, "s": None, "op": 9, "d": False}))
            return
        conn.resume = d
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            self._detach(old)
            self._spawn(old.ws.close(code=4000))
        seq = d.get("seq") or 0
        conn.session = session
        conn.cursor = next((i for i, (s, _, _) in enumerate(session.history) if s > seq), len(session.history))
        session.conn = conn
        self._emit("RESUMED", {"_trace": ['["gateway-prd-fake-1",{"micros":0.0}]']})
        conn.ready = True
        conn.writer = asyncio.ensure_future(self._writer(conn))

    def _on_request_members(self, conn: _Conn, d: dict[str, Any]) -> None:
        guild_ids = d.get("guild_id")
        if not isinstance(guild_ids, list):
            guild_ids = [guild_ids]
        for gid in guild_ids:
            guild = self._guilds.get(int(gid))
            if guild is None:
                continue
            query = (d.get("query") or "").lower()
            limit = int(d.get("limit") or 0)
            user_ids = d.get("user_ids")
            if user_ids is not None:
                wanted = [int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])]
                found = [u for u in wanted if u in guild.members]
                not_found = [str(u) for u in wanted if u not in guild.members]
            else:
                found = [u for u in guild.members if self._users[u]["username"].lower().startswith(query)]
                not_found = []
            if limit:
                found = found[:limit]
            chunk: dict[str, Any] = {"guild_id": str(gid), "members": [self._member_payload(guild, u) for u in found],
                                     "chunk_index": 0, "chunk_count": 1}
            if not_found:
                chunk["not_found"] = not_found
            if d.get("presences"):
                chunk["presences"] = []
            if d.get("nonce") is not None:
                chunk["nonce"] = d["nonce"]
            self._emit("GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        # GATEWAY_*_LIMITED flags mean "enabled in the portal" for unverified bots.
        refused = Intent.PRIVILEGED if self.refuse_privileged is True else int(self.refuse_privileged or 0)
        flags = 1 << 23  # APPLICATION_COMMAND_BADGE
        if not refused & Intent.GUILD_PRESENCES:
            flags |= 1 << 13
        if not refused & Intent.GUILD_MEMBERS:
            flags |= 1 << 15
        if not refused & Intent.MESSAGE_CONTENT:
            flags |= 1 << 19
        return flags

    # ---------------------------------------------------------------- REST

    _ROUTES: list[tuple[str, str, str, str]] = [
        # (method, regex on path, handler name, rate-limit route name)
        ("GET", r"/users/@me", "_r_me", "users.me"),
        ("POST", r"/users/@me/channels", "_r_create_dm", "users.dm"),
        ("GET", r"/users/(?P<uid>\d+)", "_r_user", "users.get"),
        ("GET", r"/oauth2/applications/@me", "_r_app", "app.me"),
        ("GET", r"/applications/@me", "_r_app", "app.me"),
        ("GET", r"/gateway", "_r_gateway", "gateway"),
        ("GET", r"/gateway/bot", "_r_gateway_bot", "gateway"),
        ("GET", r"/channels/(?P<cid>\d+)", "_r_get_channel", "channels.get"),
        ("GET", r"/channels/(?P<cid>\d+)/messages", "_r_history", "messages.list"),
        ("POST", r"/channels/(?P<cid>\d+)/messages", "_r_post_message", "messages.create"),
        ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", "_r_get_message", "messages.get"),
        ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", "_r_edit_message", "messages.edit"),
        ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", "_r_delete_message", "messages.delete"),
        ("POST", r"/channels/(?P<cid>\d+)/typing", "_r_typing", "typing"),
        ("PUT", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/(?P<emoji>[^/]+)/@me", "_r_react", "reactions"),
        ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/(?P<emoji>[^/]+)/@me", "_r_unreact", "reactions"),
        ("POST", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/threads", "_r_thread_from_message", "threads.create"),
        ("POST", r"/channels/(?P<cid>\d+)/threads", "_r_thread", "threads.create"),
        ("GET", r"/guilds/(?P<gid>\d+)", "_r_guild", "guilds.get"),
        ("GET", r"/guilds/(?P<gid>\d+)/channels", "_r_guild_channels", "guilds.channels"),
        ("GET", r"/guilds/(?P<gid>\d+)/roles", "_r_guild_roles", "guilds.roles"),
        ("GET", r"/guilds/(?P<gid>\d+)/members/(?P<uid>\d+)", "_r_guild_member", "guilds.member"),
        ("GET", r"/applications/(?P<app>\d+)/commands", "_r_get_commands", "commands"),
        ("PUT", r"/applications/(?P<app>\d+)/commands", "_r_put_commands", "commands"),
        ("GET", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", "_r_get_commands", "commands"),
        ("PUT", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", "_r_put_commands", "commands"),
        ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", "_r_callback", "interactions.callback"),
        ("GET", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", "_r_get_webhook", "webhooks"),
        ("POST", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", "_r_followup", "webhooks"),
        ("GET", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", "_r_webhook_get", "webhooks"),
        ("PATCH", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", "_r_webhook_edit", "webhooks"),
        ("DELETE", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)", "_r_webhook_delete", "webhooks"),
    ]
    _COMPILED = [(m, re.compile(p + r"/?"), h, n) for m, p, h, n in _ROUTES]
    _NO_AUTH = {"_r_callback", "_r_get_webhook", "_r_followup", "_r_webhook_get", "_r_webhook_edit", "_r_webhook_delete",
                "_r_gateway"}

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        call = RestCall(request.method, path, body, query=dict(request.query), files=files)
        self.calls.append(call)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        try:
            resp = await self._route(request, call)
        except _ApiError as exc:
            body = exc.body if exc.body is not None else {"message": exc.message, "code": exc.code}
            if exc.errors:
                body["errors"] = exc.errors
            headers = {"Via": "1.1 google"} if exc.via else {}
            resp = _json_response(body, exc.status, {**headers, **exc.headers})
        except Exception as exc:  # a bug in the fake: fail fast (501 is not retried by discord.py)
            log.exception("FakeDiscord crashed handling %s %s", call.method, call.path)
            self.internal_errors.append(exc)
            resp = _json_response({"message": f"FakeDiscord internal error: {exc!r}", "code": 0}, 501)
        call.status = resp.status
        await self._notify()
        return resp

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if not request.body_exists:
            return None, []
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload: Any = None
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    files.append((part.filename or part.name or "file", await part.read()))
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode(errors="replace"), []

    async def _route(self, request: web.Request, call: RestCall) -> web.StreamResponse:
        for method, regex, handler_name, route_name in self._COMPILED:
            m = regex.fullmatch(call.path)
            if m is None or method != call.method:
                continue
            if handler_name not in self._NO_AUTH and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _ApiError(401, "401: Unauthorized", 0)
            params = m.groupdict()
            major = params.get("cid") or params.get("gid") or params.get("token") or ""
            bucket = f"{route_name}:{major}"
            for rule in self._fail_rules:
                if rule.matches(call.method, call.path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                    raise self._injected_error(rule, route_name)
            rl_headers = self._take_rate_limit(route_name, bucket)
            result = await getattr(self, handler_name)(call, **params)
            if isinstance(result, web.StreamResponse):
                resp = result
            elif result is None:
                resp = web.Response(status=204)
            else:
                resp = _json_response(result)
            resp.headers.update(rl_headers)
            resp.headers["Via"] = "1.1 google"
            return resp
        if any(regex.fullmatch(call.path) for _, regex, _, _ in self._COMPILED):
            raise _ApiError(405, "405: Method Not Allowed", 0)
        raise _ApiError(404, "404: Not Found", 0)

    @staticmethod
    def _bucket_hash(route_name: str) -> str:
        return hashlib.sha1(route_name.encode()).hexdigest()[:32]

    def _take_rate_limit(self, route_name: str, bucket: str) -> dict[str, str]:
        limit, per = self.rate_limits.get(route_name, self.default_rate_limit)
        now = time.time()
        window_end, used = self._buckets.get(bucket, (0.0, 0))
        if now >= window_end:
            window_end, used = now + per, 0
        if self.enforce_rate_limits and used >= limit:
            retry = round(window_end - now, 3)
            raise _ApiError(429, "You are being rate limited.", body={
                "message": "You are being rate limited.", "retry_after": retry, "global": False},
                headers=self._ratelimit_429_headers(route_name, limit, retry, "user"))
        used += 1
        self._buckets[bucket] = (window_end, used)
        remaining = limit - used
        if not self.enforce_rate_limits:
            remaining = max(remaining, 1)  # never make discord.py pre-emptively sleep unless asked to
        return {
            "X-RateLimit-Bucket": self._bucket_hash(route_name), "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": f"{window_end:.3f}",
            "X-RateLimit-Reset-After": f"{max(window_end - now, 0.0):.3f}",
        }

    def _ratelimit_429_headers(self, route_name: str, limit: int, retry_after: float, scope: str) -> dict[str, str]:
        headers = {"Retry-After": str(max(1, math.ceil(retry_after))), "X-RateLimit-Scope": scope}
        if scope == "global":
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update({"X-RateLimit-Bucket": self._bucket_hash(route_name), "X-RateLimit-Limit": str(limit),
                            "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                            "X-RateLimit-Reset-After": f"{retry_after:.3f}"})
        return headers

    def _injected_error(self, rule: FailRule, route_name: str) -> _ApiError:
        if rule.status == 429:
            body: dict[str, Any] = {"message": rule.message or "You are being rate limited.",
                                    "retry_after": rule.retry_after, "global": rule.global_}
            if rule.code is not None:
                body["code"] = rule.code
            limit = self.rate_limits.get(route_name, self.default_rate_limit)[0]
            headers = self._ratelimit_429_headers(route_name, limit, rule.retry_after,
                                                  "global" if rule.global_ else "user")
            return _ApiError(429, body["message"], body=body, headers=headers, via=rule.via)
        defaults = {400: ("400: Bad Request", 0), 401: ("401: Unauthorized", 0), 403: ("Missing Permissions", 50013),
                    404: ("404: Not Found", 0), 500: ("500: Internal Server Error", 0),
                    502: ("502: Bad Gateway", 0), 503: ("503: Service Unavailable", 0)}
        message, code = defaults.get(rule.status, (f"{rule.status}: Error", 0))
        return _ApiError(rule.status, rule.message or message, rule.code if rule.code is not None else code)

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        blob = self._blobs.get(request.match_info["tail"])
        if blob is None:
            blob = self._blobs.get(urllib.parse.quote(request.match_info["tail"], safe="/"))
        if blob is None:
            return web.Response(status=404, text="Not Found")
        data, ctype = blob
        return web.Response(body=data, headers={"Content-Type": ctype})

    # --- REST helpers

    def _rest_channel(self, cid: str) -> int:
        channel_id = int(cid)
        if channel_id not in self._channel_guild:
            raise _ApiError(404, "Unknown Channel", 10003)
        return channel_id

    def _rest_message(self, channel_id: int, mid: str) -> dict[str, Any]:
        message_id = int(mid)
        msg = self._messages.get(message_id)
        if msg is None or message_id in self._deleted or int(msg["channel_id"]) != channel_id:
            raise _ApiError(404, "Unknown Message", 10008)
        return msg

    def _require(self, channel_id: int, needed: int) -> None:
        if not self.enforce_permissions or self._channel_guild.get(channel_id) is None:
            return
        perms = self.permissions_for(channel_id, self.bot_id)
        if not perms & Perm.VIEW_CHANNEL:
            raise _ApiError(403, "Missing Access", 50001)
        if perms & needed != needed:
            raise _ApiError(403, "Missing Permissions", 50013)

    def _validate_message_body(self, body: Mapping[str, Any], *, creating: bool, has_files: bool = False) -> None:
        content = body.get("content")
        if content is not None and len(str(content)) > 2000:
            raise _invalid_form("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise _invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        for i, e in enumerate(embeds):
            desc = e.get("description") or ""
            if len(desc) > 4096:
                raise _invalid_form(f"embeds.{i}.description", "BASE_TYPE_MAX_LENGTH", "Must be 4096 or fewer in length.")
            total += len(desc) + len(e.get("title") or "") + sum(len(f.get("name", "")) + len(f.get("value", ""))
                                                                   for f in e.get("fields") or [])
            total += len((e.get("footer") or {}).get("text", "")) + len((e.get("author") or {}).get("name", ""))
        if total > 6000:
            raise _invalid_form("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        if creating and not content and not embeds and not has_files and not body.get("sticker_ids") \
                and not body.get("components") and not body.get("poll"):
            raise _ApiError(400, "Cannot send an empty message", 50006)

    def _files_as_attachments(self, call: RestCall) -> list[dict[str, Any]]:
        meta = {}
        if isinstance(call.json, dict):
            for a in call.json.get("attachments") or []:
                meta[str(a.get("id"))] = a
        out = []
        for index, (filename, data) in enumerate(call.files):
            m = meta.get(str(index), {})
            out.append({"filename": m.get("filename", filename), "content": data, "description": m.get("description")})
        return out

    # --- route handlers (each returns JSON data, None for 204, or a Response)

    async def _r_me(self, call: RestCall) -> Any:
        return self._me_payload()

    async def _r_create_dm(self, call: RestCall) -> Any:
        body = call.json if isinstance(call.json, dict) else {}
        try:
            user_id = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise _invalid_form("recipient_id", "BASE_TYPE_REQUIRED", "This field is required") from None
        if user_id not in self._users:
            raise _ApiError(400, "Invalid Recipient(s)", 50033)
        return self._channel_payload(self.dm_channel(user_id))

    async def _r_user(self, call: RestCall, uid: str) -> Any:
        if int(uid) not in self._users:
            raise _ApiError(404, "Unknown User", 10013)
        return self._user_payload(int(uid))

    async def _r_app(self, call: RestCall) -> Any:
        owner = self._user_payload(next((g.owner_id for g in self._guilds.values()), self.bot_id))
        return {
            "id": str(self.application_id), "name": self._users[self.bot_id]["username"], "icon": None,
            "description": "", "summary": "", "type": None, "hook": True, "bot_public": True,
            "bot_require_code_grant": False, "verify_key": hashlib.sha256(self.token.encode()).hexdigest(),
            "flags": self._application_flags(), "owner": owner, "team": None, "bot": self._user_payload(self.bot_id),
            "guild_id": None, "primary_sku_id": None, "slug": None, "cover_image": None, "rpc_origins": [],
            "terms_of_service_url": None, "privacy_policy_url": None, "tags": [], "custom_install_url": None,
            "role_connections_verification_url": None, "install_params": None, "interactions_endpoint_url": None,
            "redirect_uris": [], "approximate_guild_count": len(self._guilds), "approximate_user_install_count": 0,
            "integration_types_config": {"0": {}}, "is_monetized": False, "event_webhooks_status": 1,
        }

    async def _r_gateway(self, call: RestCall) -> Any:
        return {"url": str(self.gateway_url).rstrip("/")}

    async def _r_gateway_bot(self, call: RestCall) -> Any:
        return {"url": str(self.gateway_url).rstrip("/"), "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}}

    async def _r_get_channel(self, call: RestCall, cid: str) -> Any:
        channel_id = self._rest_channel(cid)
        self._require(channel_id, Perm.VIEW_CHANNEL)
        return self._channel_payload(channel_id)

    async def _r_history(self, call: RestCall, cid: str) -> Any:
        channel_id = self._rest_channel(cid)
        self._require(channel_id, Perm.VIEW_CHANNEL)
        if self._channel_guild.get(channel_id) is not None and self.enforce_permissions \
                and not self.permissions_for(channel_id, self.bot_id) & Perm.READ_MESSAGE_HISTORY:
            return []
        limit = max(1, min(100, int(call.query.get("limit", 50))))
        ids = [mid for mid in self._channel_messages.get(channel_id, [])
               if mid not in self._deleted and not self._messages[mid]["flags"] & MSG_FLAG_EPHEMERAL]
        if "before" in call.query:
            ids = [i for i in ids if i < int(call.query["before"])][-limit:]
        elif "after" in call.query:
            ids = [i for i in ids if i > int(call.query["after"])][:limit]
        elif "around" in call.query:
            around = int(call.query["around"])
            older = [i for i in ids if i <= around][-(limit // 2 + limit % 2):]
            newer = [i for i in ids if i > around][: limit // 2]
            ids = older + newer
        else:
            ids = ids[-limit:]
        return [self._render(i) for i in reversed(ids)]  # Discord returns newest first

    async def _r_get_message(self, call: RestCall, cid: str, mid: str) -> Any:
        channel_id = self._rest_channel(cid)
        self._require(channel_id, Perm.VIEW_CHANNEL | Perm.READ_MESSAGE_HISTORY)
        return self._render(int(self._rest_message(channel_id, mid)["id"]))

    async def _r_post_message(self, call: RestCall, cid: str) -> Any:
        channel_id = self._rest_channel(cid)
        body = call.json if isinstance(call.json, dict) else {}
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is None:
            recipient = int(self._dm_channels[channel_id]["recipients"][0]["id"])
            if recipient in self.dms_closed:
                raise _ApiError(403, "Cannot send messages to this user", 50007)
        else:
            is_thread = self._guild_channel(channel_id)["type"] in THREAD_TYPES
            self._require(channel_id, Perm.SEND_MESSAGES_IN_THREADS if is_thread else Perm.SEND_MESSAGES)
        self._validate_message_body(body, creating=True, has_files=bool(call.files))
        reply_to = None
        ref = body.get("message_reference")
        if ref and ref.get("message_id") is not None and ref.get("type", 0) == 0:
            rid = int(ref["message_id"])
            rmsg = self._messages.get(rid)
            if guild_id is not None and self.enforce_permissions and \
                    not self.permissions_for(channel_id, self.bot_id) & Perm.READ_MESSAGE_HISTORY:
                raise _ApiError(403, "Cannot reply without permission to read message history", 160002)
            if rmsg is None or rid in self._deleted or int(rmsg["channel_id"]) != int(ref.get("channel_id", channel_id)):
                if ref.get("fail_if_not_exists", True):
                    raise _invalid_form("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            else:
                reply_to = rid
        mention_ids: list[int] = []
        allowed = body.get("allowed_mentions")
        if reply_to is not None and (allowed is None or allowed.get("replied_user", True)):
            mention_ids.append(int(self._messages[reply_to]["author"]["id"]))
        msg = self._create_message(
            channel_id, self.bot_id, str(body.get("content") or ""), type_=19 if reply_to else 0,
            mention_ids=mention_ids, reply_to=reply_to, embeds=body.get("embeds"),
            attachments=self._files_as_attachments(call), components=body.get("components"),
            nonce=body.get("nonce"), tts=bool(body.get("tts")), flags=int(body.get("flags") or 0) & (4 | 4096),
            parse_mentions=True)
        if self.echo_bot_messages:
            self._emit("MESSAGE_CREATE", self._gateway_message(msg), self._message_intent(channel_id), content_gated=True)
        return self._render(int(msg["id"]))

    async def _r_edit_message(self, call: RestCall, cid: str, mid: str) -> Any:
        channel_id = self._rest_channel(cid)
        msg = self._rest_message(channel_id, mid)
        body = call.json if isinstance(call.json, dict) else {}
        if int(msg["author"]["id"]) != self.bot_id and (set(body) - {"flags"}):
            raise _ApiError(403, "Cannot edit a message authored by another user", 50005)
        self._validate_message_body(body, creating=False)
        self._apply_edit(msg, body)
        if self.echo_bot_messages:
            self._emit("MESSAGE_UPDATE", self._gateway_message(msg), self._message_intent(channel_id), content_gated=True)
        return self._render(int(msg["id"]))

    async def _r_delete_message(self, call: RestCall, cid: str, mid: str) -> Any:
        channel_id = self._rest_channel(cid)
        msg = self._rest_message(channel_id, mid)
        if int(msg["author"]["id"]) != self.bot_id:
            self._require(channel_id, Perm.MANAGE_MESSAGES)
        self._deleted.add(int(msg["id"]))
        self._emit("MESSAGE_DELETE", self._delete_payload(channel_id, int(msg["id"])), self._message_intent(channel_id))
        return None

    async def _r_typing(self, call: RestCall, cid: str) -> Any:
        channel_id = self._rest_channel(cid)
        is_thread = channel_id in self._channel_guild and self._channel_guild[channel_id] is not None \
            and self._guild_channel(channel_id)["type"] in THREAD_TYPES
        self._require(channel_id, Perm.SEND_MESSAGES_IN_THREADS if is_thread else Perm.SEND_MESSAGES)
        return None

    async def _r_react(self, call: RestCall, cid: str, mid: str, emoji: str) -> Any:
        channel_id = self._rest_channel(cid)
        msg = self._rest_message(channel_id, mid)
        self._require(channel_id, Perm.ADD_REACTIONS | Perm.READ_MESSAGE_HISTORY)
        emoji = urllib.parse.unquote(emoji)
        self._add_reaction(msg, emoji, self.bot_id)
        payload = self._reaction_payload(channel_id, int(msg["id"]), self.bot_id, emoji)
        payload.update({"message_author_id": msg["author"]["id"], "burst_colors": []})
        self._emit("MESSAGE_REACTION_ADD", payload, self._reaction_intent(channel_id))
        return None

    async def _r_unreact(self, call: RestCall, cid: str, mid: str, emoji: str) -> Any:
        channel_id = self._rest_channel(cid)
        msg = self._rest_message(channel_id, mid)
        emoji = urllib.parse.unquote(emoji)
        self._remove_reaction(msg, emoji, self.bot_id)
        payload = self._reaction_payload(channel_id, int(msg["id"]), self.bot_id, emoji)
        payload.pop("member", None)
        self._emit("MESSAGE_REACTION_REMOVE", payload, self._reaction_intent(channel_id))
        return None

    def _create_thread(self, channel_id: int, body: Mapping[str, Any], thread_id: int, type_: int) -> dict[str, Any]:
        guild_id = self._channel_guild.get(channel_id)
        if guild_id is None:
            raise _ApiError(400, "Cannot execute action on a DM channel", 50003)
        parent = self._guild_channel(channel_id)
        if parent["type"] in THREAD_TYPES:
            raise _ApiError(400, "Cannot execute action on this channel type", 50024)
        self._require(channel_id, Perm.CREATE_PRIVATE_THREADS if type_ == 12 else Perm.CREATE_PUBLIC_THREADS)
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise _invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        data = self._thread_payload(guild_id, thread_id, name, type_, channel_id, self.bot_id)
        data["thread_metadata"]["auto_archive_duration"] = int(body.get("auto_archive_duration") or 1440)
        self._guilds[guild_id].channels[thread_id] = data
        self._channel_guild[thread_id] = guild_id
        self._channel_messages.setdefault(thread_id, [])
        self._emit("THREAD_CREATE", {**copy.deepcopy(data), "newly_created": True}, Intent.GUILDS)
        return copy.deepcopy(data)

    async def _r_thread_from_message(self, call: RestCall, cid: str, mid: str) -> Any:
        channel_id = self._rest_channel(cid)
        msg = self._rest_message(channel_id, mid)
        if int(msg["id"]) in self._channel_guild:
            raise _ApiError(400, "A thread has already been created for this message", 160004)
        data = self._create_thread(channel_id, call.json or {}, int(msg["id"]), 11)
        msg["thread"] = copy.deepcopy(data)
        return data

    async def _r_thread(self, call: RestCall, cid: str) -> Any:
        channel_id = self._rest_channel(cid)
        body = call.json or {}
        return self._create_thread(channel_id, body, self._ids.next(), int(body.get("type") or 12))

    async def _r_guild(self, call: RestCall, gid: str) -> Any:
        guild = self._guilds.get(int(gid))
        if guild is None:
            raise _ApiError(404, "Unknown Guild", 10004)
        payload = self._guild_create_payload(guild)
        for key in ("channels", "threads", "members", "voice_states", "presences", "joined_at", "large",
                    "member_count", "unavailable", "lazy", "stage_instances", "guild_scheduled_events",
                    "soundboard_sounds", "embedded_activities"):
            payload.pop(key, None)
        return payload

    async def _r_guild_channels(self, call: RestCall, gid: str) -> Any:
        guild = self._guilds.get(int(gid))
        if guild is None:
            raise _ApiError(404, "Unknown Guild", 10004)
        return [copy.deepcopy(c) for c in guild.channels.values() if c["type"] not in THREAD_TYPES]

    async def _r_guild_roles(self, call: RestCall, gid: str) -> Any:
        guild = self._guilds.get(int(gid))
        if guild is None:
            raise _ApiError(404, "Unknown Guild", 10004)
        return [copy.deepcopy(r) for r in guild.roles.values()]

    async def _r_guild_member(self, call: RestCall, gid: str, uid: str) -> Any:
        guild = self._guilds.get(int(gid))
        if guild is None:
            raise _ApiError(404, "Unknown Guild", 10004)
        if int(uid) not in guild.members:
            raise _ApiError(404, "Unknown Member", 10007)
        return self._member_payload(guild, int(uid))

    def _check_app(self, app: str) -> None:
        if int(app) != self.application_id:
            raise _ApiError(403, "Missing Access", 50001)

    async def _r_get_commands(self, call: RestCall, app: str, gid: str | None = None) -> Any:
        self._check_app(app)
        return self.commands(None if gid is None else int(gid))

    async def _r_put_commands(self, call: RestCall, app: str, gid: str | None = None) -> Any:
        self._check_app(app)
        guild_id = None if gid is None else int(gid)
        if guild_id is not None and guild_id not in self._guilds:
            raise _ApiError(403, "Missing Access", 50001)
        body = call.json if isinstance(call.json, list) else []
        old = self._commands.get(guild_id, {})
        new: dict[tuple[str, int], dict[str, Any]] = {}
        for i, cmd in enumerate(body):
            type_ = int(cmd.get("type", 1))
            name = str(cmd.get("name", ""))
            if type_ == 1 and (not re.fullmatch(r"[-_\w]{1,32}", name) or name != name.lower()):
                raise _invalid_form(f"{i}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
            if type_ == 1 and not 1 <= len(cmd.get("description") or "") <= 100:
                raise _invalid_form(f"{i}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            prev = old.get((name, type_))
            full = {
                "id": prev["id"] if prev else str(self._ids.next()), "application_id": str(self.application_id),
                "version": str(self._ids.next()), "type": type_, "name": name,
                "name_localizations": cmd.get("name_localizations"), "description": cmd.get("description", ""),
                "description_localizations": cmd.get("description_localizations"),
                "options": copy.deepcopy(cmd.get("options") or []),
                "default_member_permissions": (None if cmd.get("default_member_permissions") is None
                                               else str(int(cmd["default_member_permissions"]))),
                "nsfw": bool(cmd.get("nsfw", False)),
                "contexts": cmd.get("contexts"), "integration_types": cmd.get("integration_types") or [0],
            }
            if guild_id is not None:
                full["guild_id"] = str(guild_id)
            else:
                full["dm_permission"] = cmd.get("dm_permission", True)
            new[(name, type_)] = full
        self._commands[guild_id] = new
        return self.commands(guild_id)

    # --- interactions

    def _interaction_by_token(self, token: str) -> InteractionRecord:
        for rec in self.interactions.values():
            if rec.token == token:
                return rec
        raise _ApiError(404, "Unknown Webhook", 10015)

    def _interaction_message(self, rec: InteractionRecord, body: Mapping[str, Any], *, loading: bool = False,
                             ephemeral: bool = False, files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        flags = (MSG_FLAG_EPHEMERAL if ephemeral else 0) | (MSG_FLAG_LOADING if loading else 0)
        flags |= int(body.get("flags") or 0) & 4
        return self._create_message(
            rec.channel_id, self.bot_id, "" if loading else str(body.get("content") or ""), type_=20,
            embeds=body.get("embeds"), components=body.get("components"), attachments=files, flags=flags,
            interaction=rec, parse_mentions=True)

    def _emit_visible(self, event: str, msg: dict[str, Any]) -> None:
        if not msg["flags"] & MSG_FLAG_EPHEMERAL:
            self._emit(event, self._gateway_message(msg), self._message_intent(int(msg["channel_id"])),
                       content_gated=True)

    async def _r_callback(self, call: RestCall, iid: str, token: str) -> Any:
        rec = self.interactions.get(int(iid))
        if rec is None or rec.token != token or time.monotonic() - rec.created > self.interaction_ack_timeout:
            raise _ApiError(404, "Unknown interaction", 10062)
        if rec.ack_type is not None:
            raise _ApiError(400, "Interaction has already been acknowledged.", 40060)
        body = call.json if isinstance(call.json, dict) else {}
        type_ = int(body.get("type", 0))
        data = body.get("data") or {}
        if type_ not in (1, 4, 5, 6, 7, 8, 9, 12):
            raise _invalid_form("type", "BASE_TYPE_CHOICES", "Value must be one of {1, 4, 5, 6, 7, 8, 9, 12}.")
        msg = None
        if type_ == 4:
            self._validate_message_body(data, creating=True, has_files=bool(call.files))
        rec.callbacks.append(copy.deepcopy(body))
        rec.ack_type = type_
        rec.ephemeral = bool(int(data.get("flags") or 0) & MSG_FLAG_EPHEMERAL)
        if type_ in (4, 5):
            rec.loading = type_ == 5
            msg = self._interaction_message(rec, data, loading=rec.loading, ephemeral=rec.ephemeral,
                                            files=self._files_as_attachments(call))
            rec.original_message_id = int(msg["id"])
            self._emit_visible("MESSAGE_CREATE", msg)
        if call.query.get("with_response") not in ("1", "true", "True"):
            return None
        interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.payload["type"]}
        result: dict[str, Any] = {"interaction": interaction}
        if msg is not None:
            interaction.update({"response_message_id": msg["id"], "response_message_loading": rec.loading,
                                "response_message_ephemeral": rec.ephemeral})
            result["resource"] = {"type": type_, "message": self._render(int(msg["id"]))}
        else:
            result["resource"] = {"type": type_}
        return result

    def _check_webhook(self, app: str, token: str) -> InteractionRecord:
        if int(app) != self.application_id:
            raise _ApiError(404, "Unknown Webhook", 10015)
        return self._interaction_by_token(token)

    def _webhook_target(self, rec: InteractionRecord, mid: str) -> dict[str, Any]:
        if mid == "@original":
            if rec.original_message_id is None or rec.original_message_id in self._deleted:
                raise _ApiError(404, "Unknown Message", 10008)
            return self._messages[rec.original_message_id]
        message_id = int(mid)
        if message_id not in (rec.followup_message_ids + [rec.original_message_id]) or message_id in self._deleted:
            raise _ApiError(404, "Unknown Message", 10008)
        return self._messages[message_id]

    async def _r_get_webhook(self, call: RestCall, app: str, token: str) -> Any:
        rec = self._check_webhook(app, token)
        return {"id": str(self.application_id), "type": 3, "application_id": str(self.application_id),
                "name": self._users[self.bot_id]["username"], "avatar": None, "channel_id": str(rec.channel_id),
                "guild_id": None if rec.guild_id is None else str(rec.guild_id), "token": token}

    async def _r_followup(self, call: RestCall, app: str, token: str) -> Any:
        rec = self._check_webhook(app, token)
        if rec.ack_type is None:
            raise _ApiError(404, "Unknown Webhook", 10015)
        body = call.json if isinstance(call.json, dict) else {}
        self._validate_message_body(body, creating=True, has_files=bool(call.files))
        files = self._files_as_attachments(call)
        if rec.loading and rec.original_message_id is not None:
            # The first follow-up after a deferral replaces the "thinking..." message; its ephemerality
            # comes from the defer, not from these flags.
            msg = self._messages[rec.original_message_id]
            rec.loading = False
            msg["flags"] &= ~MSG_FLAG_LOADING
            msg["attachments"] = self._store_attachments(rec.channel_id, files)
            self._apply_edit(msg, {"content": body.get("content") or "", "embeds": body.get("embeds") or [],
                                   "components": body.get("components") or []})
            msg["edited_timestamp"] = None
            self._emit_visible("MESSAGE_UPDATE", msg)
        else:
            msg = self._interaction_message(rec, body, ephemeral=bool(int(body.get("flags") or 0) & MSG_FLAG_EPHEMERAL),
                                            files=files)
            rec.followup_message_ids.append(int(msg["id"]))
            self._emit_visible("MESSAGE_CREATE", msg)
        if call.query.get("wait") in ("0", "false", "False"):
            return None
        return self._render(int(msg["id"]))

    async def _r_webhook_get(self, call: RestCall, app: str, token: str, mid: str) -> Any:
        rec = self._check_webhook(app, token)
        return self._render(int(self._webhook_target(rec, mid)["id"]))

    async def _r_webhook_edit(self, call: RestCall, app: str, token: str, mid: str) -> Any:
        rec = self._check_webhook(app, token)
        msg = self._webhook_target(rec, mid)
        body = call.json if isinstance(call.json, dict) else {}
        self._validate_message_body(body, creating=False)
        if int(msg["id"]) == rec.original_message_id and rec.loading:
            rec.loading = False
            msg["flags"] &= ~MSG_FLAG_LOADING
        if call.files:
            msg["attachments"] = msg["attachments"] + self._store_attachments(rec.channel_id, self._files_as_attachments(call))
        self._apply_edit(msg, body)
        self._emit_visible("MESSAGE_UPDATE", msg)
        return self._render(int(msg["id"]))

    async def _r_webhook_delete(self, call: RestCall, app: str, token: str, mid: str) -> Any:
        rec = self._check_webhook(app, token)
        msg = self._webhook_target(rec, mid)
        self._deleted.add(int(msg["id"]))
        if not msg["flags"] & MSG_FLAG_EPHEMERAL:
            self._emit("MESSAGE_DELETE", self._delete_payload(rec.channel_id, int(msg["id"])),
                       self._message_intent(rec.channel_id))
        return None


# --------------------------------------------------------------------------------------------
# discord.py glue
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def redirect_discordpy(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and gateway at ``fake`` for the block, then restore them.

    Both are class attributes, so this affects every client in the process (tests only).
    """
    import discord.gateway
    import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = fake.gateway_url
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def running_client(fake: FakeDiscord, client: Any, *, timeout: float = 10.0) -> AsyncIterator[asyncio.Task[None]]:
    """Log ``client`` in against ``fake``, run it until on_ready, yield its connect task, then close it.

    Why: a parser KeyError kills the connect task silently; this re-raises whatever the task died
    with, both while waiting for ready and on exit, so a broken payload fails the test loudly.
    Use inside :func:`redirect_discordpy`. Create the client with a small ``guild_ready_timeout``:
    discord.py always waits that long after the last GUILD_CREATE before on_ready (default 2 s).
    """
    try:
        await client.login(fake.token)
    except BaseException:
        await client.close()  # login opened an HTTP session; don't leak it
        raise
    task: asyncio.Task[None] = asyncio.ensure_future(client.connect(reconnect=True))
    ready = asyncio.ensure_future(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what killed it
            raise AssertionError("client.connect() returned before on_ready")
        if ready not in done:
            raise AssertionError(f"client not ready after {timeout}s")
        yield task
        if task.done():
            task.result()
    finally:
        ready.cancel()
        await client.close()
        try:
            await asyncio.wait_for(task, 5.0)
        except asyncio.CancelledError:
            pass
