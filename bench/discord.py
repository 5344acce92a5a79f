"""Discord benchmark: `chatbots run` against the fake Discord (REST + gateway), with a fake model answering at once.

    python -m bench.discord

(a) 20 mentions one after another: dispatching MESSAGE_CREATE -> the REST call that carries the final content.
(b) 200 mentions in 200 channels at once: replies per second, p50/p99, the bot's CPU per reply.
(c) REST calls per reply, by method and route.  (d) the bot's peak RSS.

The fake's rate limits are per channel and not enforced, as on Discord where each channel has its own buckets:
nothing here waits on a limit a real bot in 200 channels would not also have.

The pieces (DiscordSide: the fake Discord plus a tracker that times each reply) are reused by bench.suite.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter

from aiohttp import web

from bench.common import (
    Trace,
    instant_benchmark,
    visible,
)
from tests.fakes.discord import FakeDiscord, RestCall

GUILD = 1000
USER = 42
FIRST_CHANNEL = 2000
ONE_OFF = {"GET /users/@me", "GET /oauth2/applications/@me"}
_IDS = re.compile(r"/\d+")
_CHANNEL = re.compile(r"/channels/(\d+)(/|$)")


def route(call: RestCall) -> str:
    return f"{call.method} {_IDS.sub('/{id}', call.path)}"


class TimedDiscord(FakeDiscord):
    """FakeDiscord that stamps each REST call when it took effect (after the fake's latency).

    Adds to each RestCall: done (monotonic time), channel (the channel id in its path, or None), and for posts
    and edits of messages, shown (the bot's text in that channel right after the call).
    """

    read_latency = 0.0
    """Extra seconds for every GET (a read), on top of ``latency``."""

    async def _route(self, request: web.Request, call: RestCall) -> web.StreamResponse:
        if call.method == "GET" and self.read_latency:
            await asyncio.sleep(self.read_latency)
        call.done = None  # type: ignore[attr-defined]
        found = _CHANNEL.search(call.path)
        call.channel = found.group(1) if found else None  # type: ignore[attr-defined]
        call.shown = None  # type: ignore[attr-defined]
        response = await super()._route(request, call)
        call.done = time.monotonic()  # type: ignore[attr-defined]
        if found and call.method in ("POST", "PATCH") and "/messages" in call.path:
            channel = int(found.group(1))
            bot = str(self.bot_id)
            messages = (self._messages[mid] for mid in self._channel_messages.get(channel, ()) if mid not in self._deleted)
            call.shown = "".join(m["content"] for m in messages if m["author"]["id"] == bot)  # type: ignore[attr-defined]
        return response


class DiscordSide:
    """The fake Discord (a guild with `channels` text channels), the bot's Discord settings, and per-reply timing.

    send() mentions the bot in the next unused channel, so every reply is a new conversation.
    """

    platform = "discord"

    def __init__(self, channels: int, latency: float = 0.0) -> None:
        self.fake = TimedDiscord()
        self.fake.latency = latency
        self.fake.add_guild(GUILD, "Bench Guild")
        self._free = list(range(FIRST_CHANNEL, FIRST_CHANNEL + channels))
        for channel in self._free:
            self.fake.add_channel(GUILD, channel, f"c{channel}")
        self.fake.add_member(GUILD, USER, "alice")
        self._free.reverse()
        self.traces: dict[str, Trace] = {}
        self.other_calls: Counter[str] = Counter()
        self._seen = 0

    async def __aenter__(self) -> DiscordSide:
        await self.fake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fake.stop()

    def env(self) -> dict[str, str]:
        return {"DISCORD_BOT_TOKEN": self.fake.token, "DISCORD_API_URL": self.fake.api_url,
                "DISCORD_GATEWAY_URL": str(self.fake.gateway_url)}

    def attach(self, port: int) -> None:
        """The gateway connects to the fake; nothing to point at the bot."""

    async def ready(self) -> None:
        await self.fake.wait_connected(timeout=30)

    @property
    def latency(self) -> float:
        return self.fake.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.fake.latency = seconds

    def slow_reads(self, seconds: float) -> None:
        """Make every GET take this long: a read on a reply's path then shows in its timing."""
        self.fake.read_latency = seconds

    async def send(self, question: str, expected: str, user: int = USER) -> Trace:
        """Dispatch MESSAGE_CREATE mentioning the bot in a fresh channel; the Trace fills in as the reply shows."""
        channel = self._free.pop()
        trace = Trace(str(channel), question, visible(expected), time.monotonic())
        self.traces[str(channel)] = trace
        await self.fake.send_message(channel, user, question, mentions_bot=True)
        return trace

    def scan(self) -> None:
        """Attribute the REST calls completed since the last scan to their replies."""
        calls = self.fake.calls
        while self._seen < len(calls) and calls[self._seen].status:
            call = calls[self._seen]
            self._seen += 1
            trace = self.traces.get(getattr(call, "channel", None) or "")
            if trace is None:
                self.other_calls[route(call)] += 1
                continue
            trace.calls[route(call)] += 1
            shown = getattr(call, "shown", None)
            done = getattr(call, "done", None) or call.t
            if shown and trace.first_text_at is None:
                trace.first_text_at = done
            if shown and trace.final_at is None and visible(shown) == trace.expected:
                trace.final_at = done

    async def wait(self, traces: list[Trace], timeout: float = 60.0, strict: bool = True) -> None:
        def done() -> bool:
            self.scan()
            return all(trace.final_at is not None for trace in traces)

        try:
            await self.fake.wait_for(done, timeout, what=f"answers in {len(traces)} channels")
        except AssertionError:
            if strict:
                raise


async def main() -> None:
    print(json.dumps(await instant_benchmark(DiscordSide(channels=221), one_off=frozenset(ONE_OFF)), indent=2))


if __name__ == "__main__":
    asyncio.run(main())
