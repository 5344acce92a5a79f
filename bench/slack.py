"""Slack benchmark: `chatbots run` in HTTP mode against the fake Slack, with a fake model answering at once.

    python -m bench.slack

(a) 20 mentions one after another: posting the signed event -> the complete reply reaching Slack.
(b) 200 mentions in 200 threads at once: replies per second, p50/p99.
(c) Web API calls per reply, by method.  (d) the bot's peak RSS.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench.common import bot_process, cpu_seconds, free_port, peak_rss_mib, summarise_ms
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import FakeSlack, app_mention, event_callback, next_ts, post_signed

SECRET = "bench-secret"
ONE_OFF = {"auth.test", "users.info"}


async def mention_and_wait(slack: FakeSlack, session: aiohttp.ClientSession, url: str, channel: str, n: int) -> float:
    ts = next_ts()
    text = f"question number {n} about the quarterly plan"
    body = event_callback("T1", app_mention(channel, "U1", f"<@UBOT> {text}", ts=ts))
    began = time.monotonic()
    status, _ = await post_signed(session, url, body, SECRET)
    assert status == 200

    def done() -> float | None:
        for message in slack.messages(channel):
            if message.thread_ts == ts and message.text == f"echo: {text}" and message.stream_state in (None, "completed"):
                return slack.calls[-1].t
        return None

    finished = await slack.wait_for(done, timeout=60)
    return finished - began


async def main() -> None:
    async with FakeSlack() as slack, FakeModelServer(default_chunks=50) as model:
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            env = {
                "OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "x", "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url, "CHATBOTS_DB": str(Path(folder) / "b.db"),
            }
            async with bot_process(env, port) as bot, aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/slack/events"
                await mention_and_wait(slack, session, url, "CWARM", 0)
                sequential = [await mention_and_wait(slack, session, url, "CSEQ", n) for n in range(20)]

                before = len(slack.calls)
                cpu_before = cpu_seconds(bot.pid)
                began = time.monotonic()
                burst = await asyncio.gather(*(mention_and_wait(slack, session, url, f"C{n}", n) for n in range(200)))
                elapsed = time.monotonic() - began
                cpu = cpu_seconds(bot.pid) - cpu_before
                calls = Counter(call.method for call in slack.calls[before:])
                result = {
                    "a_sequential_20": summarise_ms(sequential),
                    "b_burst_200": {**summarise_ms(burst), "replies_per_s": round(200 / elapsed, 1),
                                     "cpu_ms_per_reply": round(cpu / 200 * 1000, 2)},
                    "c_calls_per_reply": {m: round(c / 200, 2) for m, c in sorted(calls.items()) if m not in ONE_OFF},
                    "c_calls_per_reply_total": round(sum(c for m, c in calls.items() if m not in ONE_OFF) / 200, 2),
                    "d_peak_rss_mib": peak_rss_mib(bot.pid),
                }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
