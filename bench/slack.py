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
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    TimedModelServer, Trace, bot_process, cpu_seconds, free_port, peak_rss_mib, summarise_ms, visible,
)
from tests.fakes.slack import Call, FakeSlack, PostedMessage, app_mention, event_callback, next_ts, post_signed

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

    async def send(self, question: str, expected: str, user: str = "U1") -> Trace:
        """Post a signed app_mention starting a new thread; the Trace fills in as the reply shows."""
        if user not in self._users:
            self.fake.add_user(user, name=f"user-{user.lower()}")
            self._users.add(user)
        channel = f"C{next(self._threads)}"
        ts = next_ts()
        body = event_callback("T1", app_mention(channel, user, f"<@UBOT> {question}", ts=ts))
        trace = Trace(f"{channel}/{ts}", question, visible(expected), time.monotonic())
        self.traces[(channel, ts)] = trace
        assert self._session is not None
        status, _ = await post_signed(self._session, self.url, body, SECRET)
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
    async with TimedModelServer(default_chunks=50) as model, SlackSide() as side:
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "x", "CHATBOTS_DB": str(Path(folder) / "b.db"),
                   **side.env()}
            async with bot_process(env, port) as bot:
                side.attach(port)

                async def one(n: int) -> Trace:
                    text = f"question number {n} about the quarterly plan"
                    return await side.send(text, f"echo: {text}")

                warm = await one(0)
                await side.wait([warm])
                sequential = []
                for n in range(20):
                    trace = await one(n)
                    await side.wait([trace])
                    sequential.append(trace.final_at - trace.event_at)

                before = Counter(side.other_calls)
                cpu_before = cpu_seconds(bot.pid)
                began = time.monotonic()
                burst = await asyncio.gather(*(one(1000 + n) for n in range(200)))
                await side.wait(burst)
                elapsed = max(t.final_at for t in burst) - began
                cpu = cpu_seconds(bot.pid) - cpu_before
                calls = sum((t.calls for t in burst), Counter()) + (side.other_calls - before)
                result = {
                    "a_sequential_20": summarise_ms(sequential),
                    "b_burst_200": {**summarise_ms([t.final_at - t.event_at for t in burst]),
                                     "replies_per_s": round(200 / elapsed, 1), "cpu_ms_per_reply": round(cpu / 200 * 1000, 2)},
                    "c_calls_per_reply": {m: round(c / 200, 2) for m, c in sorted(calls.items()) if m not in ONE_OFF},
                    "c_calls_per_reply_total": round(sum(c for m, c in calls.items() if m not in ONE_OFF) / 200, 2),
                    "d_peak_rss_mib": peak_rss_mib(bot.pid),
                }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
