"""The REST API the bot calls, with Discord's errors, permission checks and rate-limit headers."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import re
import time
import urllib.parse
from typing import Any, Mapping

from aiohttp import web

from .records import FailRule, Intent, InteractionRecord, MSG_FLAG_EPHEMERAL, MSG_FLAG_LOADING, Perm, RestCall, THREAD_TYPES, _ApiError, _invalid_form, _json_response, log


class RestApi:
    """Serves /api/v10: one handler per route, each call recorded, injected faults and 429s on demand."""

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
        """Attachment downloads, as Discord's CDN serves them (no token needed); recorded in ``file_downloads``."""
        return await self.hosting.serve(request, request.rel_url.raw_path)

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
        return {"url": str(self.gateway_url).rstrip("/"), "shards": self.recommended_shards,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000,
                                        "max_concurrency": self.max_concurrency}}

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
