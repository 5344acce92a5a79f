"""The fake Slack's world and lifecycle: users, messages, faults, inspection and waiting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from .records import Call, DEFAULT_APP_ID, DEFAULT_BOT_ID, DEFAULT_BOT_USER_ID, DEFAULT_SCOPES, DEFAULT_TEAM_ID, Handler, PostedMessage, _ApiError, _Fault, _ts_key, next_ts

if TYPE_CHECKING:
    from . import FakeSlack


class SlackState:
    """What FakeSlack knows and how tests drive it; the Web API and Socket Mode mixins serve it."""

    Error = _ApiError  # raise FakeSlack.Error("code") from a route() handler

    def __init__(
        self,
        *,
        team_id: str = DEFAULT_TEAM_ID,
        team: str = "Fake Team",
        bot_user_id: str = DEFAULT_BOT_USER_ID,
        bot_id: str = DEFAULT_BOT_ID,
        bot_name: str = "chatbot",
        app_id: str = DEFAULT_APP_ID,
        scopes: str = DEFAULT_SCOPES,
        streaming_supported: bool = True,
        streaming_error: str = "not_allowed_token_type",
        require_stream_recipients: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.team_id = team_id
        self.team = team
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.app_id = app_id
        self.scopes = scopes
        # Slack documents no single error for "this app/workspace cannot stream"; the
        # method's documented errors include not_allowed_token_type, channel_type_not_supported
        # and unknown_method. Callers should fall back on *any* startStream error.
        self.streaming_supported = streaming_supported
        self.streaming_error = streaming_error
        # Slack requires recipient_user_id + recipient_team_id when streaming outside DMs.
        self.require_stream_recipients = require_stream_recipients
        self.latency = latency
        self.method_latency: dict[str, float] = {}

        self.calls: list[Call] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.statuses: dict[tuple[str, str], str] = {}
        self.status_history: list[tuple[str, str, str]] = []
        self.reactions: list[tuple[str, str, str]] = []  # (channel, ts, name)
        self.users: dict[str, dict[str, Any]] = {}
        self.revoked_tokens: dict[str, str] = {}
        self.envelopes: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.socket_connects = 0
        self.suggested_prompts: dict[tuple[str, str], dict[str, Any]] = {}
        """(channel, thread_ts) -> {"title": ..., "prompts": [...]}, as last set."""
        self.titles: dict[tuple[str, str], str] = {}
        self.home_views: dict[str, list[dict[str, Any]]] = {}
        """user id -> every view published to their Home tab, oldest first."""
        self.channels: dict[str, dict[str, Any]] = {}
        """channel id -> conversations.info's channel object (is_member ...); unknown channels are channel_not_found."""

        self._messages: dict[tuple[str, str], PostedMessage] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._omissions: dict[str, list[str]] = {}
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "assistant.threads.setStatus": self._assistant_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_suggested_prompts,  # type: ignore[attr-defined]
            "assistant.threads.setTitle": self._assistant_set_title,  # type: ignore[attr-defined]
            "views.publish": self._views_publish,  # type: ignore[attr-defined]
            "conversations.info": self._conversations_info,  # type: ignore[attr-defined]
            "conversations.history": self._conversations_history,  # type: ignore[attr-defined]
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "reactions.add": self._reactions_add,
            "apps.connections.open": self._apps_connections_open,
            "files.info": self._files_info,  # type: ignore[attr-defined]
        }
        self._init_files()  # type: ignore[attr-defined]
        self._init_oauth()  # type: ignore[attr-defined]
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._changed_event: asyncio.Event | None = None

        self.add_user(bot_user_id, name=bot_name, is_bot=True, team_id=team_id, bot_id=bot_id)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        """Bind to a free port on 127.0.0.1 and start serving."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)  # type: ignore[attr-defined]
        app.router.add_get("/files-pri/{tail:.*}", self._handle_file)  # type: ignore[attr-defined]
        self._changed_event = asyncio.Event()
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close Socket Mode connections, then the server."""
        self.hosting.release()  # type: ignore[attr-defined]
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"fake slack stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def api_url(self) -> str:
        """Base URL for ``AsyncWebClient(base_url=...)``; the trailing slash matters."""
        return f"http://127.0.0.1:{self.port}/api/"

    def _new_ws_url(self, ticket: str) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    # ---- configuration ---------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        team_id: str | None = None,
        real_name: str | None = None,
        deleted: bool = False,
        tz: str = "Europe/London",
        bot_id: str | None = None,
    ) -> dict[str, Any]:
        """Register a user for users.info; returns the user object the API will return."""
        name = name or user_id.lower()
        real_name = real_name or name
        profile: dict[str, Any] = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": name,
            "display_name_normalized": name,
            "status_text": "",
            "status_emoji": "",
            "team": team_id or self.team_id,
        }
        if bot_id is not None:
            profile["bot_id"] = bot_id
        user = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "deleted": deleted,
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": 0,
            "profile": profile,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        self.users[user_id] = user
        return user

    def add_channel(self, channel: str, *, is_member: bool = True, name: str | None = None) -> None:
        """A channel conversations.info knows; history is read only when the bot is a member (as in Slack)."""
        self.channels[channel] = {"id": channel, "name": name or channel.lower(), "is_channel": True,
                                  "is_private": False, "is_member": is_member, "is_archived": False}

    def seed_thread(self, channel: str, thread_ts: str, messages: list[dict[str, Any]]) -> None:
        """Put existing messages in a thread, for conversations.replies.

        Each dict is a Slack message ("user", "text", optional "ts", "bot_id", ...). The
        message whose ts equals ``thread_ts`` is the parent; if none is given, the first
        dict becomes the parent. Other dicts get a fresh ts when they have none.
        """
        for i, raw in enumerate(messages):
            data = dict(raw)
            ts = data.pop("ts", None) or (thread_ts if i == 0 else next_ts())
            data.pop("thread_ts", None)
            data.pop("type", None)
            msg = PostedMessage(
                channel=channel,
                ts=ts,
                text=data.pop("text", ""),
                thread_ts=thread_ts,
                user=data.pop("user", None),
                bot_id=data.pop("bot_id", None),
                app_id=data.pop("app_id", None),
                blocks=data.pop("blocks", None),
                seeded=True,
                extra=data,
            )
            msg.versions.append(msg.text)
            self._messages[(channel, ts)] = msg

    def record_event(self, body: Mapping[str, Any]) -> None:
        """Let the fake know what a delivered event says happened in Slack.

        A user's message exists in Slack before the bot hears of it, so conversations.replies
        must return it. ``socket_send_event`` calls this itself; HTTP-mode tests call it
        with the body they post. Edits and deletions of known messages are applied too.
        """
        event = body.get("event") if body.get("type") == "event_callback" else body
        if not isinstance(event, Mapping) or not event.get("channel"):
            return
        channel, subtype = str(event["channel"]), event.get("subtype")
        if event.get("type") in ("message", "app_mention") and subtype in (None, "file_share") and event.get("ts"):
            if (channel, event["ts"]) not in self._messages:
                fields = {k: v for k, v in event.items() if k not in ("channel", "event_ts", "channel_type", "type")}
                self.seed_thread(channel, str(event.get("thread_ts") or event["ts"]), [fields])
        elif subtype == "message_changed" and isinstance(event.get("message"), Mapping):
            known = self._messages.get((channel, str(event["message"].get("ts"))))
            if known is not None:
                known.text = str(event["message"].get("text", ""))
                known.versions.append(known.text)
        elif subtype == "message_deleted":
            known = self._messages.get((channel, str(event.get("deleted_ts"))))
            if known is not None:
                known.deleted = True
        self._changed()

    def fail_next(
        self,
        method: str,
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 1,
        error: str | None = None,
        **extra: Any,
    ) -> None:
        """Make the next ``times`` calls to ``method`` ("*" for any method) fail.

        - status 429 (the default without ``error``): HTTP 429, ``Retry-After`` header,
          body {"ok": false, "error": "ratelimited"}, as Slack rate limits.
        - status >= 500: that HTTP status with a JSON body {"ok": false, "error": error or
          "service_unavailable"} (what Slack's body holds on a 5xx is not documented).
        - ``error`` without ``status`` (or status 200): HTTP 200 {"ok": false, "error": error}.
        - ``extra`` fields go into the answer too: Slack's missing_scope carries ``needed`` and ``provided``.
        Failed calls are recorded in ``calls`` with their status; nothing else changes.
        """
        if status is None:
            status = 200 if error is not None else 429
        if status == 200 and error is None:
            raise ValueError("a status-200 failure needs an error code")
        self._faults.setdefault(method, []).append(
            _Fault(status=status, error=error, retry_after=retry_after if status == 429 else None, remaining=times,
                   extra=extra)
        )

    def answer_without(self, method: str, field: str, times: int = 1) -> None:
        """Make the next ``times`` ok answers to ``method`` lack ``field`` (say chat.startStream without its ts), as
        a proxy or gateway that rewrites answers might; the call itself takes effect."""
        self._omissions.setdefault(method, []).extend([field] * times)

    def revoke_token(self, token: str, error: str = "token_revoked") -> None:
        """From now on, every call with ``token`` answers ``error`` (e.g. after app_uninstalled)."""
        self.revoked_tokens[token] = error

    def route(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(call)`` (a dict; "ok": true is added if missing).

        Raise ``FakeSlack.Error("code")`` from the handler to answer {"ok": false, ...}.
        """
        self._handlers[method] = handler

    def interrupt_stream(self, channel: str, ts: str, error: str = "stopped_by_user") -> None:
        """End a stream from Slack's side; later append/stop calls answer ``error``.

        "stopped_by_user" is what Slack documents when the reader presses stop;
        "message_not_in_streaming_state" is what a stream that has ended answers.
        """
        msg = self.message(channel, ts)
        msg.stream_state = error
        self._changed()

    # ---- reading state ---------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def messages(
        self, channel: str | None = None, *, include_deleted: bool = False, include_seeded: bool = False
    ) -> list[PostedMessage]:
        """Messages in ts order: by default only the bot's own, not deleted, any channel."""
        found = [
            m
            for m in self._messages.values()
            if (channel is None or m.channel == channel)
            and (include_deleted or not m.deleted)
            and (include_seeded or not m.seeded)
        ]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    def message(self, channel: str, ts: str) -> PostedMessage:
        """The message at (channel, ts); KeyError if the fake never saw it."""
        return self._messages[(channel, ts)]

    def thread(self, channel: str, thread_ts: str) -> list[PostedMessage]:
        """Parent and replies of a thread (seeded and posted), as conversations.replies sees it."""
        found = [
            m
            for m in self._messages.values()
            if m.channel == channel and not m.deleted and (m.ts == thread_ts or m.thread_ts == thread_ts)
        ]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    @property
    def socket_connections(self) -> int:
        """Socket Mode connections currently open."""
        return sum(1 for ws in self._sockets if not ws.closed)

    # ---- waiting ---------------------------------------------------------------------

    def _changed(self) -> None:
        """Wake every waiter so it re-checks its predicate."""
        if self._changed_event is not None:
            self._changed_event.set()
            self._changed_event = asyncio.Event()

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 5.0, message: str | None = None
    ) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking after every change; return its value.

        Changes are: a Web API call recorded, a socket connecting or closing, an ack.
        On timeout raises AssertionError listing the most recent calls.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0 or self._changed_event is None:
                raise AssertionError(self._timeout_report(message or repr(predicate), timeout))
            event = self._changed_event
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> Call:
        """Wait until ``method`` has been called ``count`` times; return the count-th call."""
        await self.wait_for(
            lambda: len(self.calls_to(method)) >= count,
            timeout,
            f"{count} call(s) to {method} (have {len(self.calls_to(method))})",
        )
        return self.calls_to(method)[count - 1]

    def _timeout_report(self, what: str, timeout: float) -> str:
        lines = [f"FakeSlack: timed out after {timeout}s waiting for {what}.", "Recent calls:"]
        for call in self.calls[-15:]:
            args = json.dumps(call.args, default=str)
            if len(args) > 200:
                args = args[:200] + "..."
            lines.append(f"  {call.http_method} {call.method} -> {call.status} {call.error or 'ok'} {args}")
        if not self.calls:
            lines.append("  (none)")
        lines.append(f"Socket connections: {self.socket_connections}, envelopes sent: {len(self.envelopes)}")
        return "\n".join(lines)
