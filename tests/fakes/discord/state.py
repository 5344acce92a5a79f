"""The fake Discord's world and lifecycle: guilds, channels, members, inspection, waiting and fault rules."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from typing import Any, Callable, Mapping, Sequence

import yarl
from aiohttp import web

from ..file_hosting import DownloadRequest, FileHosting
from .records import API_VERSION, FailRule, GatewayFrame, Intent, InteractionRecord, Perm, RestCall, THREAD_TYPES, _Conn, _Guild, _Session, _Snowflakes, _iso


class DiscordState:
    """What FakeDiscord knows and how tests drive it; the REST, gateway and payload mixins serve it."""

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
        #: ``GET /gateway/bot``: the shard count Discord recommends, and how many shards may IDENTIFY per 5 s.
        self.recommended_shards = 1
        self.max_concurrency = 1

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
        #: Attachments served at /attachments/... on this fake's port (Discord's CDN); downloads recorded there.
        self.hosting = FileHosting(lambda: None)
        self._commands: dict[int | None, dict[tuple[str, int], dict[str, Any]]] = {}
        self._fail_rules: list[FailRule] = []
        self._buckets: dict[str, tuple[float, int]] = {}  # key -> (window_end, used)
        self._shard_sessions: dict[int, _Session] = {}  # shard id -> its current session (unsharded: 0)
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
        self.hosting.release()
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
    def file_downloads(self) -> list[DownloadRequest]:
        """Every attachment download request the CDN saw, in order."""
        return self.hosting.requests

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
    def _session(self) -> _Session | None:
        """Shard 0's session: the only one of an unsharded client, and the one DMs arrive on."""
        return self._shard_sessions.get(0)

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session else None

    @property
    def connected_shards(self) -> list[int]:
        """Shard ids with a live, ready gateway connection."""
        return sorted(shard for shard, s in self._shard_sessions.items() if s.live)

    def shard_events(self, shard: int) -> list[tuple[str, dict[str, Any]]]:
        """(event, data) of every dispatch queued on the shard's current session, oldest first."""
        s = self._shard_sessions.get(shard)
        return [(event, json.loads(frame)["d"]) for _, event, frame in s.history] if s else []

    def identified_shards(self) -> list[list[int] | None]:
        """The ``shard`` field of every IDENTIFY received, in order (None: the client did not shard)."""
        return [(f.d or {}).get("shard") for f in self.gateway_received(2)]

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

    async def wait_connected(self, timeout: float = 5.0, *, shards: Sequence[int] | None = None) -> None:
        """Wait until a client has identified (or resumed) and everything queued was written to it.

        ``shards``: wait for each of these shard ids; by default every shard seen so far, at least one.
        """
        def ok() -> bool:
            wanted = list(shards) if shards is not None else list(self._shard_sessions)
            return bool(wanted) and all(s is not None and s.live for s in map(self._shard_sessions.get, wanted))
        await self.wait_for(ok, timeout, what=f"ready gateway connections (shards {shards or 'seen'})")

    async def _notify(self) -> None:
        if self._cond is None:
            return
        async with self._cond:
            self._cond.notify_all()

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
