"""Slack benchmark: `chatbots run` in HTTP mode against the fake Slack, with a fake model answering at once.

    python -m bench.slack

(a) 20 mentions one after another: posting the signed event -> the complete reply reaching Slack.
(b) 200 mentions in 200 threads at once: replies per second, p50/p99.
(c) Web API calls per reply, by method.  (d) the bot's peak RSS.

The pieces (SlackSide: the fake Slack plus a tracker that times each reply) are reused by bench.suite.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.common import (
    Trace,
    instant_benchmark,
    visible,
)
from tests.fakes.slack import (
    Call,
    FakeSlack,
    PostedMessage,
    app_mention,
    event_callback,
    next_ts,
    post_signed,
)

SECRET = "bench-secret"
ONE_OFF = {"auth.test", "users.info"}
READS = {"users.info", "conversations.replies", "conversations.history", "conversations.info", "auth.test",
         "users.list", "bots.info", "team.info"}
"""Web API methods that only read: none should run while a reply is on its way."""
_SHOWING = {"chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage", "chat.update"}


class TimedSlack(FakeSlack):
    """FakeSlack that stamps each call when it took effect (after the fake's latency) with what its thread shows.

    Adds to each Call: done (monotonic time the fake applied it), thread ((channel, thread_ts) or None),
    shown (the bot's text in that thread after the call), streaming (a stream in that thread still open).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._threads: dict[tuple[str, str], list[PostedMessage]] = {}

    def _dispatch(self, call: Call) -> dict[str, Any]:
        result = super()._dispatch(call)
        call.done = time.monotonic()  # type: ignore[attr-defined]
        call.thread = call.shown = None  # type: ignore[attr-defined]
        call.streaming = False  # type: ignore[attr-defined]
        if call.method == "assistant.threads.setStatus":
            call.thread = (str(call.args.get("channel_id")), str(call.args.get("thread_ts")))  # type: ignore[attr-defined]
        elif call.method in _SHOWING and result.get("ok"):
            channel = str(call.args.get("channel"))
            message = self._messages.get((channel, str(result.get("ts") or call.args.get("ts"))))
            if message is not None and message.thread_ts:
                key = (channel, message.thread_ts)
                posted = self._threads.setdefault(key, [])
                if call.method in ("chat.startStream", "chat.postMessage"):
                    posted.append(message)
                call.thread = key  # type: ignore[attr-defined]
                call.shown = "".join(m.text for m in posted if not m.deleted)  # type: ignore[attr-defined]
                call.streaming = any(m.stream_state == "streaming" for m in posted)  # type: ignore[attr-defined]
        return result


class SlackSide:
    """The fake Slack, the bot's Slack settings, and per-reply timing: send(n) posts one mention in a new thread."""

    platform = "slack"

    def __init__(self, latency: float = 0.0) -> None:
        self.fake = TimedSlack(latency=latency)
        self.traces: dict[tuple[str, str], Trace] = {}
        self.other_calls: Counter[str] = Counter()
        self._seen = 0
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        self._users: set[str] = set()
        self._threads = itertools.count(1)

    async def __aenter__(self) -> SlackSide:
        await self.fake.start()
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": self.fake.api_url}

    def attach(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/slack/events"

    async def ready(self) -> None:
        """HTTP mode needs nothing beyond /healthz answering."""

    @property
    def latency(self) -> float:
        return self.fake.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.fake.latency = seconds

    def slow_reads(self, seconds: float) -> None:
        """Make every read method take this long: a read on a reply's path then shows in its timing."""
        for method in READS:
            self.fake.method_latency[method] = seconds

    async def send(self, question: str, expected: str, user: str = "U1", url: str | None = None) -> Trace:
        """Post a signed app_mention starting a new thread (to url: another replica); the Trace fills in as the reply shows."""
        if user not in self._users:
            self.fake.add_user(user, name=f"user-{user.lower()}")
            self._users.add(user)
        channel = f"C{next(self._threads)}"
        ts = next_ts()
        body = event_callback("T1", app_mention(channel, user, f"<@UBOT> {question}", ts=ts))
        trace = Trace(f"{channel}/{ts}", question, visible(expected), time.monotonic())
        self.traces[(channel, ts)] = trace
        assert self._session is not None
        status, _ = await post_signed(self._session, url or self.url, body, SECRET)
        assert status == 200, status
        return trace

    def scan(self) -> None:
        """Attribute the calls recorded since the last scan to their replies."""
        calls = self.fake.calls
        while self._seen < len(calls):
            call = calls[self._seen]
            self._seen += 1
            trace = self.traces.get(getattr(call, "thread", None) or ("", ""))
            if trace is None:
                self.other_calls[call.method] += 1
                continue
            trace.calls[call.method] += 1
            shown = getattr(call, "shown", None)
            if shown and trace.first_text_at is None:
                trace.first_text_at = call.done  # type: ignore[attr-defined]
            if shown and trace.final_at is None and not call.streaming and visible(shown) == trace.expected:  # type: ignore[attr-defined]
                trace.final_at = call.done  # type: ignore[attr-defined]

    async def wait(self, traces: list[Trace], timeout: float = 60.0, strict: bool = True) -> None:
        def done() -> bool:
            self.scan()
            return all(trace.final_at is not None for trace in traces)

        try:
            await self.fake.wait_for(done, timeout, f"{len(traces)} complete replies")
        except AssertionError:
            if strict:
                raise


async def main() -> None:
    print(json.dumps(await instant_benchmark(SlackSide(), one_off=frozenset(ONE_OFF)), indent=2))


if __name__ == "__main__":
    asyncio.run(main())
