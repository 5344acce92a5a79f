"""The Web API methods the bot calls, with Slack's wire shapes, errors and rate limits."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from .oauth import TOKENLESS
from .records import Call, MAX_MARKDOWN_CHARS, MAX_SUGGESTED_PROMPTS, MAX_TEXT_CHARS, PostedMessage, _ApiError, _Fault, _ts_key, next_ts


class WebApi:
    """Serves /api/METHOD: form or JSON bodies, bearer tokens, injected faults, one handler per method."""

    # ---- Web API plumbing ------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except json.JSONDecodeError:
                    return self._json({"ok": False, "error": "invalid_json"})
                if isinstance(body, dict):
                    args.update(body)
            else:
                args.update(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        _client_credentials(request.headers.get("Authorization"), args)
        token = _bearer(request.headers.get("Authorization")) or args.pop("token", None)
        args.pop("token", None)

        delay = self.latency + self.method_latency.get(method, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

        call = Call(method=method, args=args, token=token, t=arrived, http_method=request.method)
        fault = self._take_fault(method)
        issued = self.tokens.get(token or "")  # an installed workspace's token carries the scopes granted to it
        headers: dict[str, str] = {"X-OAuth-Scopes": issued.scopes if issued is not None else self.scopes}
        if fault is not None:
            call.status = fault.status
            call.response = {"ok": False, "error": fault.error or _default_fault_error(fault.status), **fault.extra}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            call.response = self._dispatch(call)
            omitted = self._omissions.get(method)
            if omitted and call.response.get("ok"):
                call.response.pop(omitted.pop(0), None)
        self.calls.append(call)
        self._changed()
        return self._json(call.response, status=call.status, headers=headers)

    def _dispatch(self, call: Call) -> dict[str, Any]:
        if call.method in TOKENLESS:
            pass
        elif call.token is None:
            return {"ok": False, "error": "not_authed"}
        elif call.token in self.revoked_tokens:
            return {"ok": False, "error": self.revoked_tokens[call.token]}
        elif refused := self._token_refused(call.token):  # type: ignore[attr-defined]
            return {"ok": False, "error": refused}
        handler = self._handlers.get(call.method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            result = dict(handler(call))
        except _ApiError as exc:
            return {"ok": False, "error": exc.error, **exc.extra}
        return {"ok": True, **result}

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                return fault
        return None

    @staticmethod
    def _json(data: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response(dict(data), status=status, headers=dict(headers or {}))

    # ---- Web API methods -------------------------------------------------------------

    def _auth_test(self, call: Call) -> dict[str, Any]:
        # Bolt reads user_id and bot_id from here to ignore the bot's own events, and
        # only treats user_id as the *bot* user when the token starts with "xoxb-".
        installed = self._identity(call.token or "")  # type: ignore[attr-defined]
        if installed is not None:
            return installed
        return {
            "url": f"https://{self.team.lower().replace(' ', '-')}.slack.com/",
            "team": self.team,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _new_bot_message(self, channel: str, text: str, thread_ts: str | None, **kw: Any) -> PostedMessage:
        ts = next_ts()
        while (channel, ts) in self._messages:
            ts = next_ts()
        msg = PostedMessage(
            channel=channel,
            ts=ts,
            text=text,
            thread_ts=thread_ts,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            app_id=self.app_id,
            **kw,
        )
        msg.versions.append(text)
        self._messages[(channel, ts)] = msg
        return msg

    def _own_message(self, call: Call, *, deleting: bool = False) -> PostedMessage:
        channel, ts = _require(call, "channel"), call.args.get("ts")
        msg = self._messages.get((channel, ts or ""))
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        if not msg.is_bot or msg.bot_id != self.bot_id:
            raise _ApiError("cant_delete_message" if deleting else "cant_update_message")
        return msg

    def _chat_post_message(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel")
        text = _message_text(call.args)
        blocks = _checked_blocks(call.args.get("blocks"))
        if not text and not blocks and not call.args.get("attachments"):
            raise _ApiError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise _ApiError("msg_too_long")
        msg = self._new_bot_message(channel, text, call.args.get("thread_ts") or None, blocks=blocks)
        return {"channel": channel, "ts": msg.ts, "message": msg.to_api()}

    def _chat_update(self, call: Call) -> dict[str, Any]:
        msg = self._own_message(call)
        if msg.stream_state == "streaming":
            # Measured by others against live Slack: a message still streaming refuses edits.
            raise _ApiError("streaming_state_conflict")
        text = _message_text(call.args) if ("text" in call.args or "markdown_text" in call.args) else msg.text
        if len(text) > MAX_TEXT_CHARS:
            raise _ApiError("msg_too_long")
        blocks = _checked_blocks(call.args.get("blocks"))
        if blocks is not None:
            msg.blocks = blocks or None
        msg.text = text
        msg.versions.append(text)
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text, "message": msg.to_api()}

    def _chat_delete(self, call: Call) -> dict[str, Any]:
        msg = self._own_message(call, deleting=True)
        msg.deleted = True
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_post_ephemeral(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel")
        user = _require(call, "user", error="user_not_found")
        text = _message_text(call.args)
        if not text and not call.args.get("blocks") and not call.args.get("attachments"):
            raise _ApiError("no_text")
        message_ts = next_ts()
        self.ephemerals.append(
            {"channel": channel, "user": user, "text": text, "message_ts": message_ts,
             "thread_ts": call.args.get("thread_ts")}
        )
        return {"message_ts": message_ts}

    def _chat_start_stream(self, call: Call) -> dict[str, Any]:
        if not self.streaming_supported:
            raise _ApiError(self.streaming_error)
        channel = _require(call, "channel")
        thread_ts = _require(call, "thread_ts", error="invalid_arguments")
        if self.require_stream_recipients and not channel.startswith("D"):
            if not call.args.get("recipient_team_id"):
                raise _ApiError("missing_recipient_team_id")
            if not call.args.get("recipient_user_id"):
                raise _ApiError("missing_recipient_user_id")
        msg = self._new_bot_message(channel, "", thread_ts, streamed=True, stream_state="streaming")
        msg.versions.clear()
        self._append_stream_content(msg, call)
        return {"channel": channel, "ts": msg.ts}

    def _streaming_message(self, call: Call) -> PostedMessage:
        channel, ts = _require(call, "channel"), _require(call, "ts", error="invalid_arguments")
        msg = self._messages.get((channel, ts))
        if msg is None or msg.deleted:
            raise _ApiError("message_not_found")
        if msg.stream_state == "completed" or not msg.streamed:
            raise _ApiError("message_not_in_streaming_state")
        if msg.stream_state != "streaming":
            raise _ApiError(str(msg.stream_state))  # set by interrupt_stream()
        return msg

    def _chat_append_stream(self, call: Call) -> dict[str, Any]:
        msg = self._streaming_message(call)
        self._append_stream_content(msg, call)
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_stop_stream(self, call: Call) -> dict[str, Any]:
        msg = self._streaming_message(call)
        self._append_stream_content(msg, call)
        blocks = _checked_blocks(call.args.get("blocks"))
        if blocks:
            msg.blocks = blocks
        msg.stream_state = "completed"
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.to_api()}

    def _append_stream_content(self, msg: PostedMessage, call: Call) -> None:
        """Add markdown_text / chunks to a streamed message.

        Others measured that a stream is locked to the shape its content first arrived in
        (markdown_text or chunks) and answers "streaming_mode_mismatch" otherwise; modelled.
        """
        markdown = call.args.get("markdown_text")
        chunks = _json_arg(call.args.get("chunks"))
        if markdown is None and not chunks:
            return
        mode = "text" if markdown is not None else "chunks"
        if msg.stream_mode is not None and msg.stream_mode != mode:
            raise _ApiError("streaming_mode_mismatch")
        msg.stream_mode = mode
        added = markdown or ""
        for chunk in chunks or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                added += str(chunk.get("text", ""))
            elif isinstance(chunk, dict):
                msg.chunks.append(chunk)
            else:
                raise _ApiError("invalid_chunks")
        if len(added) > MAX_MARKDOWN_CHARS:
            raise _ApiError("msg_too_long")
        if added:
            msg.text += added
            msg.versions.append(msg.text)

    def _assistant_set_status(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel_id")
        thread_ts = _require(call, "thread_ts", error="invalid_arguments")
        status = str(call.args.get("status", ""))
        self.statuses[(channel, thread_ts)] = status
        self.status_history.append((channel, thread_ts, status))
        return {}

    def _assistant_set_suggested_prompts(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel_id")
        thread_ts = _require(call, "thread_ts", error="invalid_thread_ts")
        prompts = _json_arg(call.args.get("prompts"))
        if not isinstance(prompts, list) or not prompts or len(prompts) > MAX_SUGGESTED_PROMPTS:
            raise _ApiError("invalid_arguments")
        if not all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
            raise _ApiError("invalid_arguments")
        self.suggested_prompts[(channel, thread_ts)] = {"title": call.args.get("title"), "prompts": prompts}
        return {}

    def _assistant_set_title(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel_id")
        thread_ts = _require(call, "thread_ts", error="invalid_thread_ts")
        self.titles[(channel, thread_ts)] = _require(call, "title", error="invalid_arguments")
        return {}

    def _views_publish(self, call: Call) -> dict[str, Any]:
        user = _require(call, "user_id", error="invalid_arguments")
        view = _json_arg(call.args.get("view"))
        if not isinstance(view, dict) or view.get("type") != "home" or not isinstance(view.get("blocks"), list):
            raise _ApiError("invalid_arguments")
        if len(view["blocks"]) > 100:
            raise _ApiError("invalid_arguments")
        for block in view["blocks"]:
            text = (block.get("text") or {}).get("text", "") if isinstance(block, dict) else ""
            if block.get("type") == "section" and len(text) > 3000:
                raise _ApiError("invalid_blocks")
        self.home_views.setdefault(user, []).append(view)
        return {"view": {"id": f"V{len(self.home_views[user])}", **view}}

    def _conversations_info(self, call: Call) -> dict[str, Any]:
        channel = self.channels.get(_require(call, "channel"))
        if channel is None:
            raise _ApiError("channel_not_found")
        return {"channel": channel}

    def _conversations_history(self, call: Call) -> dict[str, Any]:
        """Top-level messages, newest first; refused unless the bot is a member (not_in_channel)."""
        channel = _require(call, "channel")
        known = self.channels.get(channel)
        if known is not None and not known.get("is_member"):
            raise _ApiError("not_in_channel")
        limit = int(call.args.get("limit") or 100)
        top = [m for m in self.messages(channel, include_seeded=True) if m.thread_ts in (None, m.ts)]
        top.sort(key=lambda m: _ts_key(m.ts), reverse=True)
        return {"messages": [m.to_api() for m in top[:limit]], "has_more": len(top) > limit,
                "response_metadata": {"next_cursor": ""}}

    def _conversations_replies(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel")
        thread_ts = _require(call, "ts", error="invalid_arguments")
        thread = self.thread(channel, thread_ts)
        if not any(m.ts == thread_ts for m in thread):
            raise _ApiError("thread_not_found")
        oldest, latest = call.args.get("oldest"), call.args.get("latest")
        inclusive = str(call.args.get("inclusive", "0")).lower() in ("1", "true")

        def in_range(m: PostedMessage) -> bool:
            if m.ts == thread_ts:
                return True  # Slack always returns the parent first
            if oldest and (_ts_key(m.ts) < _ts_key(oldest) or (not inclusive and m.ts == oldest)):
                return False
            return not (latest and (_ts_key(m.ts) > _ts_key(latest) or (not inclusive and m.ts == latest)))

        selected = [m for m in thread if in_range(m)]
        start = int(call.args.get("cursor") or 0)
        limit = int(call.args.get("limit") or 1000)
        page = selected[start : start + limit]
        has_more = start + limit < len(selected)
        replies = [m for m in thread if m.ts != thread_ts]
        rendered = []
        for m in page:
            data = m.to_api()
            if m.ts == thread_ts and replies:
                data.update(
                    reply_count=len(replies),
                    reply_users=sorted({r.user for r in replies if r.user}),
                    latest_reply=replies[-1].ts,
                )
            rendered.append(data)
        return {
            "messages": rendered,
            "has_more": has_more,
            "response_metadata": {"next_cursor": str(start + limit) if has_more else ""},
        }

    def _users_info(self, call: Call) -> dict[str, Any]:
        user = self.users.get(str(call.args.get("user", "")))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    def _reactions_add(self, call: Call) -> dict[str, Any]:
        channel = _require(call, "channel")
        ts = _require(call, "timestamp", error="invalid_arguments")
        name = _require(call, "name", error="invalid_name")
        if (channel, ts, name) in self.reactions:
            raise _ApiError("already_reacted")
        self.reactions.append((channel, ts, name))
        if (channel, ts) in self._messages:
            self._messages[(channel, ts)].reactions.append(name)
        return {}

    def _apps_connections_open(self, call: Call) -> dict[str, Any]:
        if not (call.token or "").startswith("xapp-"):
            raise _ApiError("not_allowed_token_type")
        return {"url": self._new_ws_url(uuid.uuid4().hex)}

    # ---- Socket Mode -----------------------------------------------------------------


def _client_credentials(header: str | None, args: dict[str, Any]) -> None:
    """HTTP Basic auth (how slack_sdk sends client_id and client_secret to oauth.v2.access) into the arguments."""
    if not header or not header.startswith("Basic "):
        return
    try:
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return
    args.setdefault("client_id", client_id)
    args.setdefault("client_secret", secret)


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _require(call: Call, name: str, error: str | None = None) -> str:
    value = call.args.get(name)
    if not value:
        raise _ApiError(error or f"{name}_not_found")
    return str(value)


def _json_arg(value: Any) -> Any:
    """Form-encoded requests carry blocks / chunks as JSON strings; JSON requests as lists."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise _ApiError("invalid_arguments") from None
    return value


def _checked_blocks(value: Any) -> Any:
    """Blocks as Slack checks them where it matters here: markdown blocks hold at most 12,000 characters in all,
    sections 3,000, and a context_actions block 1 to 5 elements."""
    blocks = _json_arg(value)
    if blocks is None:
        return None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and b.get("type") for b in blocks):
        raise _ApiError("invalid_blocks")
    markdown = sum(len(str(b.get("text", ""))) for b in blocks if b["type"] == "markdown")
    if markdown > MAX_MARKDOWN_CHARS:
        raise _ApiError("invalid_blocks")
    for block in blocks:
        if block["type"] == "section" and len(str((block.get("text") or {}).get("text", ""))) > 3000:
            raise _ApiError("invalid_blocks")
        if block["type"] == "context_actions" and not 1 <= len(block.get("elements") or []) <= 5:
            raise _ApiError("invalid_blocks")
    return blocks


def _message_text(args: Mapping[str, Any]) -> str:
    text = args.get("text")
    if text is None:
        text = args.get("markdown_text")
    return "" if text is None else str(text)


def _default_fault_error(status: int) -> str:
    return "ratelimited" if status == 429 else "service_unavailable"
