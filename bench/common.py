"""Shared pieces of the benchmarks: the bot as a real subprocess, /proc readings, percentiles, a timed fake model.

The fakes live in the benchmark process, beside the bot; every timestamp is time.monotonic() in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.model_server import FakeModelServer, _last_user_text, _split
from tests.processes import bot_process, free_port

__all__ = [
    "ANSWER_500", "LoopLag", "Meter", "ModelRequest", "RssSampler", "TimedModelServer", "Trace", "bot_process",
    "cpu_seconds", "free_port", "instant_benchmark", "model_nominal_s", "peak_rss_mib", "percentile", "platform_bot",
    "question", "reader_floor", "rss_mib", "self_cpu_seconds", "summarise_ms", "visible",
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summarise_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name):
            return int(line.split()[1])
    raise LookupError(field_name)


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), from /proc."""
    return round(_status_kib(pid, "VmHWM:") / 1024, 1)


def rss_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS), from /proc."""
    return round(_status_kib(pid, "VmRSS:") / 1024, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    """User + system CPU of this benchmark process (the fakes and the measuring), all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """Wall time, the bot's CPU and this process's CPU over one measured window."""

    pid: int
    wall: float = field(default_factory=time.monotonic)
    bot_cpu: float = 0.0
    bench_cpu: float = 0.0

    def __post_init__(self) -> None:
        self.bot_cpu = cpu_seconds(self.pid)
        self.bench_cpu = self_cpu_seconds()

    def read(self, replies: int) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        bot = cpu_seconds(self.pid) - self.bot_cpu
        bench = self_cpu_seconds() - self.bench_cpu
        return {
            "wall_s": round(wall, 3),
            "bot_cpu_ms_per_reply": round(bot / max(replies, 1) * 1000, 2),
            "bot_cpu_cores": round(bot / wall, 2) if wall else 0.0,
            "bench_cpu_ms_per_reply": round(bench / max(replies, 1) * 1000, 2),
            "bench_cpu_cores": round(bench / wall, 2) if wall else 0.0,
        }


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in the background: [(seconds since start, MiB)]."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.began = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self.began = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            try:
                self.samples.append((round(time.monotonic() - self.began, 2), rss_mib(self.pid)))
            except (OSError, LookupError):
                return
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


@dataclass
class Trace:
    """One reply as the platform saw it: when its event was sent, when text first showed, when all of it showed."""

    key: str
    question: str
    expected: str
    """visible() of the complete answer."""
    event_at: float
    first_text_at: float | None = None
    final_at: float | None = None
    calls: Counter[str] = field(default_factory=Counter)
    """Platform calls attributable to this reply, by method (or route)."""


class LoopLag:
    """How late this process's event loop runs a 5 ms timer while the block runs: the fakes' own queueing delay.

    A late timer means every fake (model, Slack, Discord) answers that much later too, whatever the bot does.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.period
            await asyncio.sleep(self.period)
            self.lags.append(max(time.monotonic() - due, 0.0))

    def summary(self) -> dict[str, float]:
        if not self.lags:
            return {}
        return {"p50_ms": round(statistics.median(self.lags) * 1000, 1), "p99_ms": round(percentile(self.lags, 0.99) * 1000, 1),
                "max_ms": round(max(self.lags) * 1000, 1)}


def visible(text: str) -> str:
    """Text as compared for "the complete answer is shown": whitespace ignored (messages split at spaces)."""
    return "".join(text.split())


# ---------------------------------------------------------------------------------------------------------------
# A fake model that streams a fixed answer one token per chunk and records when each request started and ended.
# ---------------------------------------------------------------------------------------------------------------

_PARAGRAPHS = [
    "Here is how I would approach the quarterly plan. First, look at where the revenue actually came from last "
    "quarter, not where the forecast said it would come from. The gap between the two usually tells you more than "
    "either number alone.",
    "Second, check which of last quarter's commitments slipped, and why: a team that missed because of a dependency "
    "needs a different fix than a team that missed because the estimate was optimistic. Write both kinds down.",
    "Third, pick at most three goals for the quarter, each with one owner and one number that says whether it "
    "worked. More than three goals tends to mean none of them get the attention they need, and the plan turns "
    "into a wish list that nobody reads after the first week.",
    "Finally, decide now what you will stop doing. Every new goal takes time from something else, and it is "
    "better to choose that trade openly than to discover it in the middle of the quarter when a deadline slips.",
]


def _answer_tokens(count: int) -> list[str]:
    """A realistic English answer cut to exactly `count` o200k tokens (gpt-4o-mini's), one string per token."""
    from chatbots.tokens import encoder

    enc = encoder("o200k_base")
    text = "\n\n".join(_PARAGRAPHS * (count // 150 + 2))
    tokens = enc.encode_ordinary(text)[:count]
    pieces = [enc.decode([token]) for token in tokens]
    assert len(pieces) == count and all(pieces)
    return pieces


ANSWER_500 = _answer_tokens(500)
"""500 one-token chunks, about 2,500 characters: two Discord messages, one Slack stream."""


@dataclass
class ModelRequest:
    """One chat request as the fake model saw it: arrival, first content chunk written, last byte ([DONE]) written."""

    question: str
    arrived: float
    first_chunk: float | None = None
    done: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.done is None else self.done - self.arrived


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _frame(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini",
            "choices": choices}


@dataclass
class TimedModelServer(FakeModelServer):
    """FakeModelServer that records each request's timing (`timings`, by the question it answers).

    With `answer` set, every chat request gets that answer, one list item per SSE chunk, pre-encoded once so the
    fake itself costs little CPU beside the bot; otherwise it echoes "echo: <question>" in `default_chunks`
    pieces like the plain fake. first_token_delay and chunk_delay pace the stream as in FakeModelServer.
    """

    answer: list[str] | None = None
    timings: list[ModelRequest] = field(default_factory=list)
    by_question: dict[str, ModelRequest] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._frames = [_sse(_frame({"content": piece})) for piece in self.answer] if self.answer else None

    @property
    def answer_text(self) -> str:
        return "".join(self.answer or [])

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.json()
        await self._record(body)
        question = _last_user_text(body)
        timing = ModelRequest(question, arrived)
        self.timings.append(timing)
        self.by_question[question] = timing
        frames = self._frames or [_sse(_frame({"content": p})) for p in _split("echo: " + question, self.default_chunks)]
        usage = {"prompt_tokens": 11 * len(body["messages"]), "completion_tokens": len(frames)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        tail = _sse(_frame({}, finish="stop")) + _sse({**_frame(None), "usage": usage}) + b"data: [DONE]\n\n"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if self.chunk_delay:
            await self._pacer().stream(response, frames, tail, arrived + self.first_token_delay, self.chunk_delay, timing)
        else:
            if self.first_token_delay:
                await asyncio.sleep(self.first_token_delay)
            for index, frame in enumerate(frames):
                await response.write(frame)
                if index == 0:
                    timing.first_chunk = time.monotonic()
            await response.write(tail)
            timing.done = time.monotonic()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def stop(self) -> None:
        pacer = getattr(self, "_paced", None)
        if pacer is not None:
            await pacer.close()
        await super().stop()

    def _pacer(self) -> _Pacer:
        found = getattr(self, "_paced", None)
        if found is None:
            found = self._paced = _Pacer()
        return found


class _Pacer:
    """Writes every paced stream's due chunks from one timer loop, instead of a sleeping task per stream.

    Chunk i of a stream is due at first_due + i * interval. Each tick writes what is due for every stream, so a tick
    that comes late sends the overdue chunks together (still one SSE event per token) and the stream keeps its
    nominal pace: the fake model's timing does not stretch when the benchmark process is busy. One timer instead
    of a hundred keeps the fake's own CPU low beside the bot.
    """

    def __init__(self) -> None:
        self._streams: list[list[Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for entry in self._streams:
            if not entry[-1].done():
                entry[-1].cancel()

    async def stream(self, response: web.StreamResponse, frames: list[bytes], tail: bytes, first_due: float,
                     interval: float, timing: ModelRequest) -> None:
        finished = asyncio.get_running_loop().create_future()
        self._streams.append([response, frames, tail, first_due, interval, 0, timing, finished])
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        await finished

    async def _run(self) -> None:
        while True:
            if not self._streams:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            following = now + 1.0
            for entry in list(self._streams):
                response, frames, tail, first_due, interval, sent, timing, finished = entry
                due = min(len(frames), int((now - first_due) / interval) + 1) if now >= first_due else 0
                if due > sent:
                    last = due == len(frames)
                    try:
                        await response.write(b"".join(frames[sent:due]) + (tail if last else b""))
                    except (ConnectionError, RuntimeError):  # the client went away: end this stream quietly
                        self._streams.remove(entry)
                        finished.set_result(None)
                        continue
                    written = time.monotonic()
                    if sent == 0:
                        timing.first_chunk = written
                    entry[5] = sent = due
                    if last:
                        timing.done = written
                        self._streams.remove(entry)
                        finished.set_result(None)
                        continue
                following = min(following, first_due + sent * interval)
            self._wake.clear()
            pause = max(following - time.monotonic(), 0.001)
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except TimeoutError:
                pass


def model_nominal_s(server: TimedModelServer, chunks: int) -> float:
    """The stream's length by its settings alone: first-token delay plus a chunk delay between chunks."""
    return server.first_token_delay + max(chunks - 1, 0) * server.chunk_delay


def ms(values: Iterable[float]) -> list[float]:
    return [value * 1000 for value in values]


# ---------------------------------------------------------------------------------------------------------------
# The bot as a subprocess against one or more platform sides (bench.slack.SlackSide, bench.discord.DiscordSide).
# ---------------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def platform_bot(sides: list[Any], model: FakeModelServer, **extra_env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`chatbots run` wired to the model and every side's fake, ready once /healthz answers and gateways connect."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "x", "CHATBOTS_DB": str(Path(folder) / "b.db"),
               "CHATBOTS_LOG_LEVEL": "WARNING", **extra_env}
        for side in sides:
            env.update(side.env())
        async with bot_process(env, port) as bot:
            for side in sides:
                side.attach(port)
                await side.ready()
            yield bot


def question(n: int) -> str:
    return f"question number {n} about the quarterly plan"


async def instant_benchmark(side: Any, sequential: int = 20, burst: int = 200, one_off: frozenset[str] = frozenset(),
                            **extra_env: str) -> dict[str, Any]:
    """The earlier issues' platform benchmark: an echo model answering at once in 50 chunks, default settings.

    (a) `sequential` mentions one after another, event -> complete reply; (b) `burst` mentions at once in as many
    conversations: replies/s, p50/p99, the bot's CPU; (c) platform calls per reply (without `one_off` start-up
    calls); (d) the bot's peak RSS.
    """
    async with TimedModelServer(default_chunks=50) as model, side, platform_bot([side], model, **extra_env) as bot:

        async def one(n: int) -> Trace:
            return await side.send(question(n), f"echo: {question(n)}")

        warm = await one(0)
        await side.wait([warm])
        latencies = []
        for n in range(sequential):
            trace = await one(n)
            await side.wait([trace])
            latencies.append(trace.final_at - trace.event_at)

        before = Counter(side.other_calls)
        meter = Meter(bot.pid)
        began = time.monotonic()
        traces = await asyncio.gather(*(one(1000 + n) for n in range(burst)))
        await side.wait(traces)
        elapsed = max(t.final_at for t in traces) - began
        load = meter.read(burst)
        calls = sum((t.calls for t in traces), Counter()) + (side.other_calls - before)
        return {
            f"a_sequential_{sequential}": summarise_ms(latencies),
            f"b_burst_{burst}": {**summarise_ms([t.final_at - t.event_at for t in traces]), "replies": len(traces),
                                 "replies_per_s": round(burst / elapsed, 1),
                                 "cpu_ms_per_reply": load["bot_cpu_ms_per_reply"],
                                 "bench_cpu_ms_per_reply": load["bench_cpu_ms_per_reply"]},
            "c_calls_per_reply": {m: round(c / burst, 2) for m, c in sorted(calls.items()) if m not in one_off},
            "c_calls_per_reply_total": round(sum(c for m, c in calls.items() if m not in one_off) / burst, 2),
            "d_peak_rss_mib": peak_rss_mib(bot.pid),
        }


_FLOOR_CLIENT = r'''
import asyncio, json, resource, sys
import aiohttp

async def main(url, concurrent, rounds):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(n):
            body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"floor {n}"}]}
            async with session.post(url, json=body) as response:
                async for data in response.content.iter_any():
                    for line in data.split(b"\n"):
                        if line.startswith(b"data: {"):
                            json.loads(line[6:])
        await asyncio.gather(*(one(-1 - i) for i in range(concurrent)))  # connections and imports warm
        before = resource.getrusage(resource.RUSAGE_SELF)
        for r in range(rounds):
            await asyncio.gather(*(one(r * concurrent + i) for i in range(concurrent)))
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"cpu_ms_per_stream": round(cpu / (concurrent * rounds) * 1000, 2)}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
'''


async def reader_floor(model: FakeModelServer, concurrent: int, rounds: int = 1) -> float:
    """CPU per stream of a bare aiohttp client (its own process) that only reads and json-parses the same stream.

    The floor any Python bot on this machine pays to receive the model's answer the way the model sends it.
    """
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", _FLOOR_CLIENT, f"{model.base_url}/chat/completions",
                                                   str(concurrent), str(rounds), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return float(json.loads(out.decode().strip().splitlines()[-1])["cpu_ms_per_stream"])
