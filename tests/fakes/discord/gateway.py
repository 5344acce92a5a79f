"""The gateway: sessions, identify and resume, and the events tests dispatch to the connected client."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
from typing import Any, AsyncIterator, Mapping, NamedTuple, Sequence

from aiohttp import WSMsgType, web

from .records import API_VERSION, GatewayFrame, Intent, InteractionRecord, Perm, _AUTO, _Conn, _Session, _iso, log, shard_of

GUILD_ID_IS_ID = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})
"""Guild events whose payload names the guild in ``id``; every other guild-scoped event carries ``guild_id``."""


class _Sent(NamedTuple):
    """Where a dispatch went: the session (shard) that queued it and its sequence number there."""

    session: _Session
    seq: int


class Gateway:
    """Serves the gateway websocket and dispatches events; reconnects and invalid sessions on demand.

    Sharding as on Discord: each IDENTIFY's ``shard: [id, count]`` opens that shard's session; a guild's
    events go only to shard ``(guild_id >> 22) % count``, DMs and guild-less events to shard 0. Every
    control below acts on shard 0 unless told ``shard=``.
    """

    # ---------------------------------------------------------------- gateway control

    async def disconnect_gateway(self, code: int | None = 4000, reason: str = "", *, shard: int = 0) -> None:
        """Drop the shard's gateway socket (``code=None``: abort TCP without a close frame).

        The session survives: a resumable code makes discord.py RESUME at ``resume_gateway_url`` and
        the fake replays every dispatch it missed, then sends RESUMED.
        """
        s = self._shard_sessions.get(shard)
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

    async def send_reconnect(self, *, shard: int = 0) -> None:
        """Send op 7 RECONNECT (discord.py closes and resumes)."""
        await self._send_op(7, None, shard)

    async def invalidate_session(self, resumable: bool = False, *, shard: int = 0) -> None:
        """Send op 9 INVALID_SESSION; unresumable forces a fresh IDENTIFY."""
        s = self._shard_sessions.get(shard)
        if s and not resumable:
            s.invalid = True
        await self._send_op(9, resumable, shard)

    async def dispatch(self, event: str, data: dict[str, Any], intent: int = 0) -> int | None:
        """Send any DISPATCH event (escape hatch for events without a helper) on the shard that owns it;
        returns its seq on that shard."""
        sent = self._emit(event, data, intent)
        await self._flush(sent)
        return sent.seq if sent else None

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
        sent = self._emit("MESSAGE_CREATE", payload, self._message_intent(channel_id), content_gated=True)
        await self._flush(sent)
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
        sent = self._emit("MESSAGE_UPDATE", payload, self._message_intent(channel_id), content_gated=True)
        await self._flush(sent)
        return payload

    async def send_reaction_add(self, channel_id: int, message_id: int, user_id: int, emoji: str) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_ADD; ``emoji`` is unicode ("👍") or custom ("name:id" / "<:name:id>")."""
        msg = self._message(channel_id, message_id)
        self._add_reaction(msg, emoji, user_id)
        payload = self._reaction_payload(channel_id, message_id, user_id, emoji)
        payload["message_author_id"] = msg["author"]["id"]
        payload["burst_colors"] = []
        sent = self._emit("MESSAGE_REACTION_ADD", payload, self._reaction_intent(channel_id))
        await self._flush(sent)
        return payload

    async def send_reaction_remove(self, channel_id: int, message_id: int, user_id: int, emoji: str) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_REMOVE."""
        msg = self._message(channel_id, message_id)
        self._remove_reaction(msg, emoji, user_id)
        payload = self._reaction_payload(channel_id, message_id, user_id, emoji)
        payload.pop("member", None)
        sent = self._emit("MESSAGE_REACTION_REMOVE", payload, self._reaction_intent(channel_id))
        await self._flush(sent)
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
        sent = self._emit("GUILD_DELETE", payload, Intent.GUILDS)
        await self._flush(sent)

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
        sent = self._emit("INTERACTION_CREATE", payload, 0)
        await self._flush(sent)
        return payload

    # ---------------------------------------------------------------- gateway internals

    def _owner(self, event: str, data: Mapping[str, Any]) -> _Session | None:
        """The current session of the shard that receives this event (None if that shard is not connected)."""
        raw = data.get("id") if event in GUILD_ID_IS_ID else data.get("guild_id")
        try:
            guild_id = int(raw) if raw is not None else None
        except (TypeError, ValueError):
            guild_id = None  # junk from a malformed-payload test: shard 0 receives it, like a DM
        return next((s for s in self._shard_sessions.values() if s.owns(guild_id)), None)

    def _emit(self, event: str, data: dict[str, Any], intent: int = 0, *, content_gated: bool = False,
              session: _Session | None = None) -> _Sent | None:
        """Queue a DISPATCH in the owning shard's session, or in ``session`` (delivered now, or replayed
        after RESUME).

        Returns where it went, or None when filtered by intents / no session of that shard exists.
        """
        s = session if session is not None else self._owner(event, data)
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
        return _Sent(s, s.seq)

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

    async def _flush(self, sent: _Sent | None, timeout: float = 5.0) -> None:
        """Wait until the dispatch was written to its shard's live socket (no-op while disconnected)."""
        if sent is None:
            return
        s, seq = sent

        def done() -> bool:
            conn = s.conn
            if conn is None or conn.closed or not conn.ready or self._shard_sessions.get(s.shard_id) is not s:
                return True
            return conn.cursor > 0 and s.history[conn.cursor - 1][0] >= seq

        with contextlib.suppress(AssertionError):
            await self.wait_for(done, timeout)

    async def _send_op(self, op: int, d: Any, shard: int = 0) -> None:
        s = self._shard_sessions.get(shard)
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
        shard = d.get("shard")
        if shard is not None and not (isinstance(shard, list) and len(shard) == 2
                                      and all(isinstance(n, int) for n in shard) and 0 <= shard[0] < shard[1]):
            await conn.ws.close(code=4010, message=b"Invalid shard.")
            return
        conn.identify = d
        session = _Session(secrets.token_hex(16), intents, shard)
        previous = self._shard_sessions.get(session.shard_id)
        if previous is not None and previous.conn is not None and previous.conn is not conn:
            old = previous.conn
            self._detach(old)
            self._spawn(old.ws.close(code=4000))
        self._sessions[session.id] = session
        self._shard_sessions[session.shard_id] = session
        self._ever_identified = True
        session.conn = conn
        conn.session = session
        ready = {
            "v": API_VERSION, "user": self._me_payload(), "user_settings": {}, "private_channels": [],
            "relationships": [], "presences": [], "guild_join_requests": [],
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self._guilds.values() if session.owns(g.id)],
            "session_id": session.id, "session_type": "normal", "resume_gateway_url": self.resume_gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "geo_ordered_rtc_regions": ["us-east"], "auth": {}, "_trace": ['["gateway-prd-fake-1",{"micros":0.0}]'],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        self._emit("READY", ready, session=session)
        for guild in self._guilds.values():
            if not guild.unavailable and session.owns(guild.id):
                self._emit("GUILD_CREATE", self._guild_create_payload(guild, session), session=session)
        conn.ready = True
        conn.writer = asyncio.ensure_future(self._writer(conn))

    async def _on_resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        if session is None or session.invalid or self._shard_sessions.get(session.shard_id) is not session:
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
        self._emit("RESUMED", {"_trace": ['["gateway-prd-fake-1",{"micros":0.0}]']}, session=session)
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
            self._emit("GUILD_MEMBERS_CHUNK", chunk, session=conn.session)

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
