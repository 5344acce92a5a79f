"""A fake Slack for tests: Web API, Socket Mode and HTTP-mode helpers, all on 127.0.0.1.

Why a server and not mocks: the bot talks to Slack through the real ``slack_sdk`` and
``slack_bolt`` libraries, and most Slack bugs live in the wire details those libraries
handle (GET vs POST, form vs JSON bodies, 429 + Retry-After, envelope acks, signatures).
A loopback server lets tests run the shipping code paths unchanged and offline.

Wire shapes follow Slack's method reference and the python-slack-sdk sources. Where a
behaviour is known only from other people's measurements, the docstring says so.

Typical use::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0].text == "hi"
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

__all__ = [
    "Call",
    "FakeSlack",
    "PostedMessage",
    "app_mention",
    "app_uninstalled",
    "bot_message",
    "channel_message",
    "dm_message",
    "event_callback",
    "message_changed",
    "message_deleted",
    "next_ts",
    "post_signed",
    "reaction_added",
    "serve",
    "sign_request",
    "slash_command_form",
    "tokens_revoked",
    "url_verification",
]

DEFAULT_TEAM_ID = "T1"
DEFAULT_BOT_USER_ID = "UBOT"
DEFAULT_BOT_ID = "BBOT"
DEFAULT_APP_ID = "A1"
DEFAULT_SCOPES = (
    "app_mentions:read,assistant:write,channels:history,chat:write,commands,"
    "groups:history,im:history,mpim:history,reactions:read,users:read"
)
# chat.postMessage documents a 40,000 character limit on `text`; markdown_text on the
# streaming methods is limited to 12,000 characters per call.
MAX_TEXT_CHARS = 40_000
MAX_MARKDOWN_CHARS = 12_000


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

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

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


# --------------------------------------------------------------------------------------
# The fake server
# --------------------------------------------------------------------------------------

Handler = Callable[[Call], Mapping[str, Any]]


class FakeSlack:
    """An aiohttp server speaking enough of Slack's Web API and Socket Mode for the bot.

    State is public so tests can read it directly: ``calls``, ``messages()``,
    ``ephemerals``, ``statuses``, ``reactions``, ``acks``, ``envelopes``.
    """

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

        self._messages: dict[tuple[str, str], PostedMessage] = {}
        self._faults: dict[str, list[_Fault]] = {}
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
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "reactions.add": self._reactions_add,
            "apps.connections.open": self._apps_connections_open,
        }
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
        self._changed_event = asyncio.Event()
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close Socket Mode connections, then the server."""
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

    @property
    def ws_url(self) -> str:
        """Socket Mode URL, shaped like Slack's wss://.../link/?ticket=...&app_id=..."""
        return self._new_ws_url("fake-ticket")

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
        if event.get("type") in ("message", "app_mention") and subtype is None and event.get("ts"):
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
    ) -> None:
        """Make the next ``times`` calls to ``method`` ("*" for any method) fail.

        - status 429 (the default without ``error``): HTTP 429, ``Retry-After`` header,
          body {"ok": false, "error": "ratelimited"}, as Slack rate limits.
        - status >= 500: that HTTP status with a JSON body {"ok": false, "error": error or
          "service_unavailable"} (what Slack's body holds on a 5xx is not documented).
        - ``error`` without ``status`` (or status 200): HTTP 200 {"ok": false, "error": error}.
        Failed calls are recorded in ``calls`` with their status; nothing else changes.
        """
        if status is None:
            status = 200 if error is not None else 429
        if status == 200 and error is None:
            raise ValueError("a status-200 failure needs an error code")
        self._faults.setdefault(method, []).append(
            _Fault(status=status, error=error, retry_after=retry_after if status == 429 else None, remaining=times)
        )

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
        token = _bearer(request.headers.get("Authorization")) or args.pop("token", None)
        args.pop("token", None)

        delay = self.latency + self.method_latency.get(method, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

        call = Call(method=method, args=args, token=token, t=arrived, http_method=request.method)
        fault = self._take_fault(method)
        headers: dict[str, str] = {"X-OAuth-Scopes": self.scopes}
        if fault is not None:
            call.status = fault.status
            call.response = {"ok": False, "error": fault.error or _default_fault_error(fault.status)}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            call.response = self._dispatch(call)
        self.calls.append(call)
        self._changed()
        return self._json(call.response, status=call.status, headers=headers)

    def _dispatch(self, call: Call) -> dict[str, Any]:
        if call.token is None:
            return {"ok": False, "error": "not_authed"}
        if call.token in self.revoked_tokens:
            return {"ok": False, "error": self.revoked_tokens[call.token]}
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
        blocks = _json_arg(call.args.get("blocks"))
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
        blocks = _json_arg(call.args.get("blocks"))
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
        blocks = _json_arg(call.args.get("blocks"))
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

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": self.socket_connections,
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        self._changed()
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    data = json.loads(frame.data)
                    if isinstance(data, dict) and data.get("envelope_id"):
                        self.acks[str(data["envelope_id"])] = data
                        self._changed()
        finally:
            self._sockets.remove(ws)
            self._changed()
        return ws

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        retry_reason: str = "",
        *,
        accepts_response_payload: bool | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Push one envelope to the newest open connection (waiting for one); return its id.

        ``envelope_type`` is "events_api", "slash_commands" or "interactive". Only
        events_api envelopes carry retry_attempt / retry_reason, as in Slack; Bolt maps them
        to X-Slack-Retry-Num / X-Slack-Retry-Reason request headers (0 included).
        """
        await self.wait_for(lambda: self.socket_connections > 0, timeout, "a Socket Mode connection")
        envelope: dict[str, Any] = {
            "envelope_id": str(uuid.uuid4()),
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": (
                envelope_type != "events_api" if accepts_response_payload is None else accepts_response_payload
            ),
        }
        if envelope_type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        ws = [s for s in self._sockets if not s.closed][-1]
        self.envelopes.append(envelope)
        await ws.send_json(envelope)
        return envelope["envelope_id"]

    async def socket_send_event(
        self, event_callback_body: dict[str, Any], retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Push an Events API body (see ``event_callback``) as an events_api envelope."""
        self.record_event(event_callback_body)
        return await self.socket_send("events_api", event_callback_body, retry_attempt, retry_reason)

    async def socket_send_slash_command(self, form: dict[str, Any]) -> str:
        """Push a slash command (see ``slash_command_form``); in Socket Mode it arrives as JSON."""
        return await self.socket_send("slash_commands", dict(form))

    async def socket_send_interactive(self, payload: dict[str, Any]) -> str:
        """Push an interactive payload (block_actions, view_submission, shortcut...)."""
        return await self.socket_send("interactive", payload)

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """Wait for the app to ack ``envelope_id``; return the ack's payload (None if it had none)."""
        ack = await self.wait_for(lambda: self.acks.get(envelope_id), timeout, f"ack of envelope {envelope_id}")
        return ack.get("payload")

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send Slack's disconnect message; slack_sdk answers by opening a new connection."""
        for ws in [s for s in self._sockets if not s.closed]:
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})

    async def socket_drop(self) -> None:
        """Close every connection abruptly from the server side (a network blip)."""
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


# --------------------------------------------------------------------------------------
# Small helpers for the server
# --------------------------------------------------------------------------------------


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


def _message_text(args: Mapping[str, Any]) -> str:
    text = args.get("text")
    if text is None:
        text = args.get("markdown_text")
    return "" if text is None else str(text)


def _default_fault_error(status: int) -> str:
    return "ratelimited" if status == 429 else "service_unavailable"


# --------------------------------------------------------------------------------------
# HTTP mode: signing and posting
# --------------------------------------------------------------------------------------


def sign_request(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with every HTTP request: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


async def post_signed(
    session: aiohttp.ClientSession | None,
    url: str,
    body: dict[str, Any] | str | bytes,
    signing_secret: str,
    *,
    json_body: bool = True,
    retry_num: int | None = None,
    retry_reason: str | None = None,
    timestamp: int | None = None,
) -> tuple[int, str]:
    """POST ``body`` to ``url`` signed like Slack; return (status, response text).

    ``json_body=True`` sends an Events API body as application/json; False sends a slash
    command / interactive form as application/x-www-form-urlencoded. ``session`` may be
    None (a short-lived session is used). Retries carry X-Slack-Retry-Num / -Reason.
    """
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    elif json_body:
        raw = json.dumps(body).encode()
    else:
        raw = urlencode(body).encode()
    headers = {
        "Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign_request(signing_secret, raw, timestamp),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    elif retry_reason is not None:
        headers["X-Slack-Retry-Reason"] = retry_reason

    async def send(s: aiohttp.ClientSession) -> tuple[int, str]:
        async with s.post(url, data=raw, headers=headers) as resp:
            return resp.status, await resp.text()

    if session is not None:
        return await send(session)
    async with aiohttp.ClientSession() as own:
        return await send(own)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app (e.g. Bolt's ``app.web_app()``) on 127.0.0.1; yield its base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------------------
# Payload builders (Events API shapes)
# --------------------------------------------------------------------------------------


def event_callback(
    team_id: str,
    event: dict[str, Any],
    event_id: str | None = None,
    api_app_id: str = DEFAULT_APP_ID,
    *,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    event_time: int | None = None,
) -> dict[str, Any]:
    """Wrap an event the way the Events API delivers it (HTTP body or events_api payload)."""
    channel = event.get("channel") or (event.get("item") or {}).get("channel") or ""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or _next_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{event.get('type', 'event')}-{team_id}-{channel}",
    }


def url_verification(challenge: str = "fake-challenge") -> dict[str, Any]:
    """The body Slack sends when the Request URL is saved in the app settings."""
    return {"token": "fake-verification-token", "challenge": challenge, "type": "url_verification"}


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rich_text",
            "block_id": uuid.uuid4().hex[:5],
            "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
        }
    ]


def _user_message(
    event_type: str,
    channel: str,
    user: str,
    text: str,
    ts: str | None,
    thread_ts: str | None,
    team: str,
    channel_type: str | None,
) -> dict[str, Any]:
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "type": event_type,
        "user": user,
        "text": text,
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "team": team,
        "blocks": _rich_text(text),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = user
    if channel_type is not None:
        event["channel_type"] = channel_type
    return event


def app_mention(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """An app_mention event; ``text`` should contain "<@UBOT>" as Slack's does."""
    return _user_message("app_mention", channel, user, text, ts, thread_ts, team, None)


def channel_message(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A plain message.channels event (use channel_type "group" for private channels)."""
    return _user_message("message", channel, user, text, ts, thread_ts, team, channel_type)


def dm_message(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """A message.im event: a direct message to the bot (channel ids start with "D")."""
    return _user_message("message", channel, user, text, ts, thread_ts, team, "im")


def bot_message(
    channel: str,
    text: str,
    ts: str | None = None,
    *,
    bot_id: str = DEFAULT_BOT_ID,
    user: str | None = DEFAULT_BOT_USER_ID,
    app_id: str = DEFAULT_APP_ID,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    legacy: bool = False,
) -> dict[str, Any]:
    """A message posted by an app, as Slack echoes it back (by default: this bot's own).

    Apps posting with a bot token produce user + bot_id and no subtype; ``legacy=True``
    gives the older subtype "bot_message" form (webhooks, classic bots) without a user.
    """
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": ts,
        "bot_id": bot_id,
        "app_id": app_id,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if legacy:
        event["subtype"] = "bot_message"
        event["username"] = "bot"
    elif user is not None:
        event["user"] = user
        event["bot_profile"] = {"id": bot_id, "app_id": app_id, "name": "bot", "deleted": False}
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_changed(
    channel: str,
    ts: str,
    text: str,
    *,
    user: str,
    previous_text: str = "",
    thread_ts: str | None = None,
    channel_type: str = "channel",
    bot_id: str | None = None,
) -> dict[str, Any]:
    """A message_changed event for the message at ``ts`` (streaming edits echo like this)."""
    event_ts = next_ts()
    message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts,
                               "edited": {"user": user, "ts": event_ts}}
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    for m in (message, previous):
        if thread_ts is not None:
            m["thread_ts"] = thread_ts
        if bot_id is not None:
            m["bot_id"] = bot_id
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "message": message,
        "previous_message": previous,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def message_deleted(
    channel: str,
    ts: str,
    *,
    user: str = "U1",
    previous_text: str = "",
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A message_deleted event for the message at ``ts``."""
    event_ts = next_ts()
    previous: dict[str, Any] = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    if thread_ts is not None:
        previous["thread_ts"] = thread_ts
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "deleted_ts": ts,
        "previous_message": previous,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel_type,
    }


def reaction_added(user: str, reaction: str, channel: str, ts: str, item_user: str) -> dict[str, Any]:
    """A reaction_added event on the message at (channel, ts) written by ``item_user``."""
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": next_ts(),
    }


def app_uninstalled() -> dict[str, Any]:
    """Sent once when the app is removed from a workspace; its tokens stop working."""
    return {"type": "app_uninstalled", "event_ts": next_ts()}


def tokens_revoked(bot_ids: list[str], oauth_ids: list[str] | None = None) -> dict[str, Any]:
    """tokens_revoked: ``bot_ids`` / ``oauth_ids`` are the user ids whose tokens were revoked."""
    return {"type": "tokens_revoked", "tokens": {"oauth": list(oauth_ids or []), "bot": list(bot_ids)},
            "event_ts": next_ts()}


def slash_command_form(
    team_id: str,
    user_id: str,
    channel_id: str,
    text: str,
    command: str = "/chatbot",
    response_url: str = "https://hooks.slack.com/commands/T1/1/fake",
    *,
    api_app_id: str = DEFAULT_APP_ID,
) -> dict[str, str]:
    """The fields of a slash command request (form-encoded over HTTP, JSON in Socket Mode)."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{next(_event_counter)}.{uuid.uuid4().hex[:12]}",
    }
