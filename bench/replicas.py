"""The 500-token burst over replicas: `chatbots run` processes sharing one PostgreSQL database.

    python -m bench.replicas [--database-url URL | local server] [--replicas 2] [--burst 100]

A throw-away database is made on the server (as bench.engine does) and every replica is started on it; Slack
mentions (HTTP mode), each a new conversation from a new person, go round-robin to the replicas, all at once.
The model streams 500 one-token chunks (200 ms to first token, 5 ms a chunk), as in the suite's stream scenario.
Exactly once: every conversation got one reply started (chat.startStream or chat.postMessage) and the model
was asked once per mention. Replies/s is compared with the model-bound ceiling: mentions over the slowest
model stream, what an infinitely fast bot would reach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.common import ANSWER_500, LoopLag, Meter, TimedModelServer, free_port, question
from bench.engine import local_postgres_url, throwaway_database, transport
from bench.slack import SlackSide
from tests.processes import bot_process

TTFT, CHUNK = 0.2, 0.005
STARTS = ("chat.startStream", "chat.postMessage")


@contextlib.asynccontextmanager
async def replicas(count: int, env: dict[str, str]) -> AsyncIterator[list[tuple[int, asyncio.subprocess.Process]]]:
    """`count` bots with the same settings (one database), each on its own port; stopped on exit."""
    async with contextlib.AsyncExitStack() as stack:
        running = []
        for _ in range(count):
            port = free_port()
            running.append((port, await stack.enter_async_context(bot_process(env, port))))
        yield running


async def run(server_url: str, count: int = 2, burst: int = 100, log=print) -> dict[str, Any]:
    model = TimedModelServer(answer=ANSWER_500, first_token_delay=TTFT, chunk_delay=CHUNK)
    side = SlackSide()
    answer = model.answer_text
    with throwaway_database(server_url) as url, tempfile.TemporaryDirectory() as folder:
        async with model, side:
            env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "x", "DATABASE_URL": url,
                   "CHATBOTS_DB": str(Path(folder) / "unused.db"), "CHATBOTS_LOG_LEVEL": "WARNING",
                   "CHATBOTS_MODERATION": "off", **side.env()}
            async with replicas(count, env) as bots:
                urls = [f"http://127.0.0.1:{port}/slack/events" for port, _ in bots]
                log(f"{count} replicas up on {transport(server_url)}")
                warm = [await side.send(question(n), answer, user=f"UW{n}", url=u) for n, u in enumerate(urls)]
                await side.wait(warm, timeout=30)
                asked = len(model.timings)
                meters = [Meter(bot.pid) for _, bot in bots]
                async with LoopLag() as lag:
                    traces = await asyncio.gather(*(side.send(question(100 + i), answer, user=f"U{5000 + i}", url=urls[i % count])
                                                    for i in range(burst)))
                    intake_lag = lag.summary()  # while the events go out and the bots take them in
                    all_acked = time.monotonic() - min(trace.event_at for trace in traces)
                    await model.wait_for_requests(asked + burst, timeout=60)
                    intake = [meter.read(burst // count) for meter in meters]  # up to the last model request
                    await side.wait(traces, timeout=180)
                loads = [meter.read(burst // count) for meter in meters]  # each replica took its share
                await asyncio.sleep(1.0)  # let a duplicate reply, if any, reach the fake before counting
                side.scan()
    span = max(t.final_at for t in traces) - min(t.event_at for t in traces)
    slowest = max(m.duration for m in model.timings[-burst:] if m.duration)
    starts = [sum(t.calls[m] for m in STARTS) for t in traces]
    replies_per_s = burst / span
    stages = _stages(traces, model)
    ceiling = burst / slowest
    return {
        "replicas": count, "burst": burst, "transport": transport(server_url),
        "replies_complete": sum(1 for t in traces if t.final_at is not None),
        "replies_started_once": sum(1 for n in starts if n == 1),
        "model_requests": len(model.timings) - asked,
        "span_s": round(span, 3),
        "replies_per_s": round(replies_per_s, 1),
        "model_bound_replies_per_s": round(ceiling, 1),
        "of_ceiling": round(replies_per_s / ceiling, 3),
        **stages,
        "fakes_loop_lag_while_sending": intake_lag,
        "all_events_acked_ms": round(1000 * all_acked, 1),
        "until_last_model_request": {"s": intake[0]["wall_s"], "bot_cpu_cores": [load["bot_cpu_cores"] for load in intake],
                                     "bench_cpu_cores": intake[0]["bench_cpu_cores"]},
        "bot_cpu_ms_per_reply": [load["bot_cpu_ms_per_reply"] for load in loads],
        "bot_cpu_cores": [load["bot_cpu_cores"] for load in loads],
        "bench_cpu_cores": loads[0]["bench_cpu_cores"],  # the fake Slack and the fake model, in this process
    }


def _stages(traces: list[Any], model: TimedModelServer) -> dict[str, Any]:
    """Where the span beyond the model's stream goes: from each event sent to its model request arriving (the burst
    being taken in), the stream itself, and from the stream's end to the reply's final text on the platform."""
    to_model, after_model = [], []
    for trace in traces:
        timing = model.by_question.get(trace.question)
        if timing is None or timing.done is None or trace.final_at is None:
            continue
        to_model.append(timing.arrived - trace.event_at)
        after_model.append(trace.final_at - timing.done)
    def spread(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"p50_ms": round(1000 * ordered[len(ordered) // 2], 1), "max_ms": round(1000 * ordered[-1], 1)} if ordered else {}
    return {"event_to_model_request": spread(to_model), "model_done_to_final_text": spread(after_model)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", help="a PostgreSQL server (default: the local one, Unix socket if present)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--burst", type=int, default=100)
    args = parser.parse_args()
    url = args.database_url or local_postgres_url()[0]
    print(json.dumps(await run(url, args.replicas, args.burst)))


if __name__ == "__main__":
    asyncio.run(main())
