"""Schema-complete payloads (users, members, guilds, channels, messages, reactions) and the message model."""

from __future__ import annotations

import copy
import re
import struct
import time
import urllib.parse
from typing import Any, Mapping, Sequence

from .records import Intent, InteractionRecord, Perm, THREAD_TYPES, _Guild, _Session, _iso, _iso_from_snowflake


class Payloads:
    """Builds every field discord.py's parsers read; a missing key kills the client's connect task."""

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

    def _guild_create_payload(self, guild: _Guild, session: _Session | None = None) -> dict[str, Any]:
        s = session if session is not None else self._owner("GUILD_CREATE", {"id": str(guild.id)})
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
        """Attachment objects as Discord sends them (signed CDN URL, proxy URL, size, image dimensions), the files
        served by this fake at ``/attachments/...`` on its own port. ``url`` / ``size`` in an entry override what
        the payload says (a payload may say anything)."""
        out = []
        for a in attachments or ():
            aid = self._ids.next()
            content = a.get("content", b"")
            if isinstance(content, str):
                content = content.encode()
            filename = a.get("filename", "file.bin")
            ctype = a.get("content_type") or ("text/plain; charset=utf-8" if filename.endswith(".txt") else "application/octet-stream")
            path = f"/attachments/{channel_id}/{aid}/{urllib.parse.quote(filename)}"
            self.hosting.put(path, content, ctype)
            # Discord signs CDN links: ex (expiry) and is (issued), hex seconds, and hm (an HMAC).
            now = int(time.time())
            signed = f"?ex={now + 86400:x}&is={now:x}&hm={aid:064x}&"
            url = a.get("url") or f"{self.base_url}{path}{signed}"
            attachment: dict[str, Any] = {
                "id": str(aid), "filename": filename, "size": a.get("size", len(content)), "url": url,
                "proxy_url": a.get("url") or f"{self.base_url}{path}{signed}", "content_type": ctype,
                "content_scan_version": 0, "flags": 0,
            }
            if a.get("description") is not None:
                attachment["description"] = a["description"]
            dimensions = _png_size(content)
            if dimensions is not None:
                attachment.update(width=dimensions[0], height=dimensions[1], placeholder_version=1,
                                  placeholder="2ggGBIB3d3h/h3eAeXd3eAeAcA==")
            out.append(attachment)
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


def _png_size(content: bytes) -> tuple[int, int] | None:
    """A PNG's width and height (Discord reports them for images)."""
    if content[:8] != b"\x89PNG\r\n\x1a\n" or len(content) < 24:
        return None
    width, height = struct.unpack(">II", content[16:24])
    return int(width), int(height)
