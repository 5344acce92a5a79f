"""Discord benchmark: `chatbots run` against the fake Discord (REST + gateway), with a fake model answering at once.

    python -m bench.discord

(a) 20 mentions one after another: dispatching MESSAGE_CREATE -> the REST call that carries the final content.
(b) 200 mentions in 200 channels at once: replies per second, p50/p99, the bot's CPU per reply.
(c) REST calls per reply, by method and route.  (d) the bot's peak RSS.

The fake's rate limits are per channel and not enforced, as on Discord where each channel has its own buckets:
nothing here waits on a limit a real bot in 200 channels would not also have.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import bot_process, cpu_seconds, free_port, peak_rss_mib, summarise_ms
from tests.fakes.discord import FakeDiscord, RestCall
from tests.fakes.model_server import FakeModelServer

GUILD = 1000
USER = 42
WARM, SEQUENTIAL = 2000, 2001
BURST = range(3000, 3200)
ONE_OFF = {"GET /users/@me", "GET /oauth2/applications/@me"}
_IDS = re.compile(r"/\d+")


def route(call: RestCall) -> str:
    return f"{call.method} {_IDS.sub('/{id}', call.path)}"


class Landing:
    """When each channel's final answer reached the fake: scans new REST calls once, however many waiters."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.expected: dict[str, str] = {}  # channel id -> final text
        self.landed: dict[str, float] = {}
        self._seen = 0

    def expect(self, channel: int, text: str) -> None:
        self.expected[str(channel)] = text

    def scan(self) -> None:
        calls = self.fake.calls
        while self._seen < len(calls) and calls[self._seen].status:
            call = calls[self._seen]
            self._seen += 1
            if call.method in ("POST", "PATCH") and call.status == 200 and isinstance(call.json, dict):
                channel = call.path.split("/")[2]
                if call.json.get("content") == self.expected.get(channel):
                    self.landed[channel] = call.t
                    del self.expected[channel]

    async def wait(self, channels: list[int], timeout: float = 60) -> list[float]:
        def done() -> bool:
            self.scan()
            return all(str(c) in self.landed for c in channels)

        await self.fake.wait_for(done, timeout, what=f"answers in {len(channels)} channels")
        return [self.landed.pop(str(c)) for c in channels]


async def mention_and_wait(fake: FakeDiscord, landing: Landing, channel: int, n: int) -> float:
    text = f"question number {n} about the quarterly plan"
    landing.expect(channel, f"echo: {text}")
    began = time.monotonic()
    await fake.send_message(channel, USER, text, mentions_bot=True)
    [landed] = await landing.wait([channel])
    return landed - began


async def burst(fake: FakeDiscord, landing: Landing) -> tuple[list[float], float]:
    """Every mention at once; each one's latency, and the span from the first dispatch to the last answer."""
    began: dict[int, float] = {}

    async def one(channel: int, n: int) -> None:
        text = f"question number {n} about the quarterly plan"
        landing.expect(channel, f"echo: {text}")
        began[channel] = time.monotonic()
        await fake.send_message(channel, USER, text, mentions_bot=True)

    await asyncio.gather(*(one(channel, n) for n, channel in enumerate(BURST)))
    landed = await landing.wait(list(BURST))
    return [t - began[channel] for channel, t in zip(BURST, landed)], max(landed) - min(began.values())


def world(fake: FakeDiscord) -> None:
    fake.add_guild(GUILD, "Bench Guild")
    for channel in (WARM, SEQUENTIAL, *BURST):
        fake.add_channel(GUILD, channel, f"c{channel}")
    fake.add_member(GUILD, USER, "alice")


async def main() -> None:
    async with FakeDiscord() as fake, FakeModelServer(default_chunks=50) as model:
        world(fake)
        landing = Landing(fake)
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            env = {
                "OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "x", "DISCORD_BOT_TOKEN": fake.token,
                "DISCORD_API_URL": fake.api_url, "DISCORD_GATEWAY_URL": str(fake.gateway_url),
                "CHATBOTS_DB": str(Path(folder) / "b.db"),
            }
            async with bot_process(env, port) as bot:
                await fake.wait_connected(timeout=30)
                await mention_and_wait(fake, landing, WARM, 0)
                sequential = [await mention_and_wait(fake, landing, SEQUENTIAL, n) for n in range(20)]

                before = len(fake.calls)
                cpu_before = cpu_seconds(bot.pid)
                latencies, elapsed = await burst(fake, landing)
                cpu = cpu_seconds(bot.pid) - cpu_before
                calls = Counter(route(call) for call in fake.calls[before:])
                replies = len(latencies)
                result = {
                    "a_sequential_20": summarise_ms(sequential),
                    "b_burst_200": {**summarise_ms(latencies), "replies": replies,
                                     "replies_per_s": round(replies / elapsed, 1),
                                     "cpu_ms_per_reply": round(cpu / replies * 1000, 2)},
                    "c_calls_per_reply": {r: round(c / replies, 2) for r, c in sorted(calls.items()) if r not in ONE_OFF},
                    "c_calls_per_reply_total": round(sum(c for r, c in calls.items() if r not in ONE_OFF) / replies, 2),
                    "d_peak_rss_mib": peak_rss_mib(bot.pid),
                }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
