"""The benchmark suite: every benchmark, one table, one JSON file.

    python -m bench.suite [--quick] [--soak-minutes N] [--json PATH] [--profile DIR] [--only LIST] [--markdown]

Each scenario runs `chatbots run` as a real subprocess, with the fakes (model, Slack, Discord) in this process, both
on the same 2 cores; the bot's CPU and this process's CPU are both reported so contention can be judged.

1. engine     bench.engine: engine overhead per reply in a 1,000,000-message database, instant in-process model.
2. instant    bench.slack / bench.discord (issues 3 and 4): echo model answering at once in 50 chunks, default
              settings (moderation on): sequential mentions, a burst at once, platform calls per reply, peak RSS.
3. floor      calibration: CPU a bare aiohttp client (own process) pays only to read and parse the 500-token stream
              below, alone and 100 at once: what any Python bot pays on this machine before doing anything.
   stream     a 500-token answer in one-token chunks (200 ms to first token, 5 ms per chunk), moderation off, per
              platform in one bot process: idle RSS after start-up and one warm-up reply; sequential replies with
              every platform call taking 0 ms, then 30 ms; a read probe (new people, every platform read taking
              500 ms: a read on the hot path adds that to the reply); then a burst of conversations at once, each
              a new conversation from a different person (so per-person lookups show).
4. moderation the same stream on Slack with CHATBOTS_MODERATION=on (served by the fake model's /v1/moderations).
5. soak       Slack and Discord in one bot process, default settings (moderation on): 100 conversations a minute
              arriving evenly, alternating platforms, each a new thread/channel from a new person, with a model at
              500 ms to first token and 30 tokens/s (500 tokens, ~17 s a reply); the bot's RSS sampled throughout.
              Growth compares the mean RSS of the first minute's second half with the mean of the last 30 s of
              sending (the same number of replies in flight); the slope over the steady part is reported too.

Definitions. Event: the signed Slack event posted / the Discord MESSAGE_CREATE dispatched. First visible text: the
first platform call carrying answer text took effect in the fake. Final text: the call after which the platform
shows the complete answer took effect. Model time: from the request reaching the fake model to its last byte
written. Bot overhead: event-to-final-text minus model time. Calls per reply: every platform call made in the
measured window (start-up calls excepted) divided by replies; reads are users.info and friends on Slack, GETs on
Discord. CPU: /proc/PID/stat of the bot; getrusage of this process. RSS: VmRSS; peak: VmHWM. Bench loop lag: how
late this process runs a 5 ms timer, i.e. how much the fakes themselves delay answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import engine as engine_bench
from bench.common import (
    ANSWER_500,
    LoopLag,
    Meter,
    RssSampler,
    TimedModelServer,
    Trace,
    instant_benchmark,
    model_nominal_s,
    peak_rss_mib,
    percentile,
    platform_bot,
    question,
    reader_floor,
    rss_mib,
)
from bench.discord import ONE_OFF as DISCORD_ONE_OFF
from bench.discord import DiscordSide
from bench.slack import ONE_OFF as SLACK_ONE_OFF
from bench.slack import READS as SLACK_READS
from bench.slack import SlackSide

ROOT = Path(__file__).resolve().parent
DEFAULT_JSON = ROOT / "results" / "latest.json"
STREAM_TTFT, STREAM_CHUNK = 0.2, 0.005
SOAK_TTFT, SOAK_CHUNK = 0.5, 1 / 30
READ_PROBE = 0.5
"""Seconds every platform read takes in the read probe: a reply that waits on a read is that much later."""


@dataclass(frozen=True)
class Plan:
    quick: bool
    engine_turns: int
    engine_messages: int
    instant_sequential: int
    instant_burst: int
    stream_sequential: int
    stream_burst: int
    moderation_replies: int
    read_probe: int
    soak_minutes: float
    soak_conversations: int
    rss_interval: float

    @classmethod
    def make(cls, quick: bool, soak_minutes: float | None, soak_conversations: int | None) -> Plan:
        minutes = soak_minutes if soak_minutes is not None else (1.0 if quick else 10.0)
        return cls(
            quick=quick,
            engine_turns=100 if quick else 300,
            engine_messages=100_000 if quick else 1_000_000,
            instant_sequential=10 if quick else 20,
            instant_burst=50 if quick else 200,
            stream_sequential=2 if quick else 20,
            stream_burst=100,
            moderation_replies=1 if quick else 10,
            read_probe=1 if quick else 5,
            soak_minutes=minutes,
            soak_conversations=soak_conversations or round(100 * minutes),
            rss_interval=2.0 if minutes <= 2 else 5.0,
        )


# ---------------------------------------------------------------------------------------------------------------
# Measuring replies
# ---------------------------------------------------------------------------------------------------------------


def _pct(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50_ms": round(statistics.median(values) * 1000, 1), "p99_ms": round(percentile(values, 0.99) * 1000, 1)}


def reply_stats(traces: list[Trace], model: TimedModelServer) -> dict[str, Any]:
    """Latencies of complete replies, split into the bot's part before the model, the model, and after it."""
    done = [t for t in traces if t.final_at is not None]
    timed = [(t, model.by_question.get(t.question)) for t in done]
    timed = [(t, m) for t, m in timed if m is not None and m.done is not None]
    return {
        "replies": len(traces),
        "completed": len(done),
        "event_to_first_text": _pct([t.first_text_at - t.event_at for t in done if t.first_text_at is not None]),
        "event_to_final_text": _pct([t.final_at - t.event_at for t in done]),
        "bot_overhead": _pct([t.final_at - t.event_at - m.duration for t, m in timed]),
        "event_to_model_request": _pct([m.arrived - t.event_at for t, m in timed]),
        "model_done_to_final_text": _pct([t.final_at - m.done for t, m in timed]),
        "model_first_token_to_first_text": _pct([t.first_text_at - m.first_chunk for t, m in timed
                                                 if t.first_text_at is not None and m.first_chunk is not None]),
        "model_time": _pct([m.duration for _, m in timed]),
    }


def calls_per_reply(traces: list[Trace], other: Counter[str], is_read: Callable[[str], bool]) -> dict[str, Any]:
    """Platform calls per reply by method: each reply's own calls plus the window's unattributed ones (users.info)."""
    total = sum((t.calls for t in traces), Counter()) + other
    replies = max(len(traces), 1)
    return {
        "by_method": {m: round(c / replies, 2) for m, c in sorted(total.items())},
        "total": round(sum(total.values()) / replies, 2),
        "reads": round(sum(c for m, c in total.items() if is_read(m)) / replies, 2),
    }


def slack_read(method: str) -> bool:
    return method in SLACK_READS


def discord_read(route: str) -> bool:
    return route.startswith("GET ")


@contextlib.asynccontextmanager
async def profiled(pid: int, path: Path | None, rate: int = 200) -> AsyncIterator[None]:
    """py-spy the bot for the block (raw folded stacks, not pausing it); nothing when path is None."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-f", "raw",
                            "-o", str(path), "--nonblocking", "-r", str(rate)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # py-spy attaching
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(spy.wait, 30)
        except subprocess.TimeoutExpired:
            spy.kill()


async def settle(plan: Plan, seconds: float = 1.0) -> None:
    """Let a reply's background work (saves, echoes) finish before reading memory or starting the next phase."""
    await asyncio.sleep(0.25 if plan.quick else seconds)


# ---------------------------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------------------------


async def scenario_engine(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    rows = await engine_bench.run(plan.engine_turns, plan.engine_messages, http=False, log=log)
    return {"turns": plan.engine_turns, "messages": plan.engine_messages, **rows[0]}


async def scenario_instant(name: str, plan: Plan) -> dict[str, Any]:
    if name == "slack":
        side: Any = SlackSide()
        one_off = frozenset(SLACK_ONE_OFF)
    else:
        side = DiscordSide(channels=1 + plan.instant_sequential + plan.instant_burst)
        one_off = frozenset(DISCORD_ONE_OFF)
    result = await instant_benchmark(side, plan.instant_sequential, plan.instant_burst, one_off)
    return {"sequential": plan.instant_sequential, "burst": plan.instant_burst, **result}


def _side(name: str, channels: int) -> Any:
    return SlackSide() if name == "slack" else DiscordSide(channels=channels)


def _user(name: str, n: int) -> Any:
    return f"U{n}" if name == "slack" else n


async def scenario_stream(name: str, plan: Plan, profile: Path | None) -> dict[str, Any]:
    """Scenario 3 for one platform, in one bot process: idle RSS, sequential at 0 and 30 ms, then the burst."""
    is_read = slack_read if name == "slack" else discord_read
    model = TimedModelServer(answer=ANSWER_500, first_token_delay=STREAM_TTFT, chunk_delay=STREAM_CHUNK)
    side = _side(name, channels=1 + 2 * plan.stream_sequential + plan.read_probe + plan.stream_burst)
    answer = model.answer_text
    result: dict[str, Any] = {
        "answer_tokens": len(ANSWER_500), "answer_chars": len(answer),
        "model_nominal_ms": round(model_nominal_s(model, len(ANSWER_500)) * 1000, 1),
    }
    async with model, side, platform_bot([side], model, CHATBOTS_MODERATION="off") as bot:
        result["rss_after_start_mib"] = rss_mib(bot.pid)
        warm = await side.send(question(0), answer, user=_user(name, 1))
        await side.wait([warm], timeout=30)
        await settle(plan)
        result["idle_rss_mib"] = rss_mib(bot.pid)

        n = 1
        for latency in (0.0, 0.03):
            side.latency = latency
            before, meter, traces = Counter(side.other_calls), Meter(bot.pid), []
            for _ in range(plan.stream_sequential):
                trace = await side.send(question(n), answer, user=_user(name, 1))
                n += 1
                await side.wait([trace], timeout=30)
                traces.append(trace)
            result[f"sequential_{round(latency * 1000)}ms"] = {
                **reply_stats(traces, model), "calls_per_reply": calls_per_reply(traces, side.other_calls - before, is_read),
                **meter.read(len(traces)),
            }
        side.latency = 0.0
        # Reads on the hot path: every read now takes READ_PROBE s; new people each time, so nothing is cached.
        side.slow_reads(READ_PROBE)
        before, traces = Counter(side.other_calls), []
        for i in range(plan.read_probe):
            trace = await side.send(question(n), answer, user=_user(name, 3000 + i))
            n += 1
            await side.wait([trace], timeout=30)
            traces.append(trace)
        side.slow_reads(0.0)
        probe = reply_stats(traces, model)
        base = result["sequential_0ms"]["bot_overhead"]["p50_ms"]
        result["read_probe"] = {
            **probe, "read_latency_ms": READ_PROBE * 1000,
            "calls_per_reply": calls_per_reply(traces, side.other_calls - before, is_read),
            "added_overhead_p50_ms": round(probe["bot_overhead"]["p50_ms"] - base, 1),
        }
        await settle(plan)

        count = plan.stream_burst
        before = Counter(side.other_calls)
        async with profiled(bot.pid, profile / f"{name}-burst.raw" if profile else None), LoopLag() as lag:
            meter = Meter(bot.pid)
            traces = await asyncio.gather(*(side.send(question(n + i), answer, user=_user(name, 5000 + i))
                                            for i in range(count)))
            await side.wait(traces, timeout=120)
        load = meter.read(count)
        stats = reply_stats(traces, model)
        span = max(t.final_at for t in traces) - min(t.event_at for t in traces)
        slowest_model = max(m.duration for m in model.timings[-count:] if m.duration)
        result["burst"] = {
            **stats, "calls_per_reply": calls_per_reply(traces, side.other_calls - before, is_read), **load,
            "span_s": round(span, 3),
            "replies_per_s": round(count / span, 1),
            "model_bound_replies_per_s": round(count / slowest_model, 1),
            "cpu_bound_replies_per_s": round(1000 / load["bot_cpu_ms_per_reply"], 1) if load["bot_cpu_ms_per_reply"] else None,
            "peak_rss_mib": peak_rss_mib(bot.pid),
            "rss_after_mib": rss_mib(bot.pid),
            "bench_loop_lag": lag.summary(),
            "profiled": profile is not None,
        }
    return result


async def scenario_floor(plan: Plan) -> dict[str, Any]:
    """Calibration: the CPU a bare aiohttp client pays just to read the 500-token stream, alone and 100 at once."""
    async with TimedModelServer(answer=ANSWER_500, first_token_delay=STREAM_TTFT, chunk_delay=STREAM_CHUNK) as model:
        single = await reader_floor(model, 1, rounds=1 if plan.quick else 3)
        burst = await reader_floor(model, plan.stream_burst)
    return {"single_cpu_ms_per_stream": single, "concurrent": plan.stream_burst, "concurrent_cpu_ms_per_stream": burst}


async def scenario_moderation(plan: Plan) -> dict[str, Any]:
    """Scenario 4: the streamed answer on Slack with moderation on; checks per reply, in and out."""
    model = TimedModelServer(answer=ANSWER_500, first_token_delay=STREAM_TTFT, chunk_delay=STREAM_CHUNK)
    side = SlackSide()
    answer = model.answer_text
    async with model, side, platform_bot([side], model, CHATBOTS_MODERATION="on") as bot:
        warm = await side.send(question(0), answer)
        await side.wait([warm], timeout=30)
        checks_before, before, meter, traces = len(model.moderation_requests), Counter(side.other_calls), Meter(bot.pid), []
        for n in range(1, plan.moderation_replies + 1):
            trace = await side.send(question(n), answer)
            await side.wait([trace], timeout=30)
            traces.append(trace)
        checks = model.moderation_requests[checks_before:]
        replies = len(traces)
        inputs = sum(1 for c in checks if c.get("input") in {t.question for t in traces})
        return {
            **reply_stats(traces, model), **meter.read(replies),
            "calls_per_reply": calls_per_reply(traces, side.other_calls - before, slack_read),
            "moderation_calls_per_reply": round(len(checks) / replies, 2),
            "moderation_input_calls_per_reply": round(inputs / replies, 2),
            "moderation_output_calls_per_reply": round((len(checks) - inputs) / replies, 2),
        }


def _window_mean(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [rss for t, rss in samples if start <= t <= end]
    return round(statistics.fmean(values), 1) if values else None


def _slope_mib_per_hour(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    points = [(t, rss) for t, rss in samples if start <= t <= end]
    if len(points) < 3:
        return None
    slope, _ = statistics.linear_regression([t for t, _ in points], [rss for _, rss in points])
    return round(slope * 3600, 1)


async def scenario_soak(plan: Plan, log: Callable[[str], None], profile: Path | None = None) -> dict[str, Any]:
    """Scenario 5: both platforms in one process, conversations at an even pace, RSS sampled all along."""
    count, duration = plan.soak_conversations, plan.soak_minutes * 60
    model = TimedModelServer(answer=ANSWER_500, first_token_delay=SOAK_TTFT, chunk_delay=SOAK_CHUNK)
    slack, discord = SlackSide(), DiscordSide(channels=count // 2 + 2)
    answer = model.answer_text
    async with model, slack, discord, platform_bot([slack, discord], model) as bot:
        warm = [await slack.send(question(0), answer), await discord.send(question(1), answer)]
        await slack.wait(warm[:1], timeout=60)
        await discord.wait(warm[1:], timeout=60)
        await settle(plan)
        idle_before = rss_mib(bot.pid)
        sides = {"slack": slack, "discord": discord}
        before = {name: Counter(side.other_calls) for name, side in sides.items()}
        checks_before = len(model.moderation_requests)
        async with profiled(bot.pid, profile / "soak.raw" if profile else None, rate=50), LoopLag() as lag:
            meter = Meter(bot.pid)
            sampler = RssSampler(bot.pid, plan.rss_interval).start()
            began = sampler.began
            tasks: dict[str, list[asyncio.Task[Trace]]] = {"slack": [], "discord": []}
            for i in range(count):
                delay = began + i * duration / count - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                name = "slack" if i % 2 == 0 else "discord"
                tasks[name].append(asyncio.create_task(sides[name].send(question(100 + i), answer, user=_user(name, 10_000 + i))))
                if i and i % max(count // 10, 1) == 0:
                    log(f"  soak: {i}/{count} sent, bot RSS {rss_mib(bot.pid)} MiB")
            sending = time.monotonic() - began
            traces = {name: list(await asyncio.gather(*found)) for name, found in tasks.items()}
            for name, side in sides.items():
                await side.wait(traces[name], timeout=120, strict=False)
            load = meter.read(sum(1 for ts in traces.values() for t in ts if t.final_at is not None))
        await sampler.stop()
        await settle(plan, 2.0)
        idle_after = rss_mib(bot.pid)
        peak = peak_rss_mib(bot.pid)

    samples = sampler.samples
    window = min(30.0, duration / 4)
    first_end = min(60.0, duration / 2)
    baseline = _window_mean(samples, first_end - window, first_end)
    end = _window_mean(samples, duration - window, duration)
    everything = [t for ts in traces.values() for t in ts]
    completed = [t for t in everything if t.final_at is not None]
    span = (max(t.final_at for t in completed) - min(t.event_at for t in everything)) if completed else 0.0
    checks = len(model.moderation_requests) - checks_before
    return {
        "conversations": count, "minutes": plan.soak_minutes, "sending_s": round(sending, 1),
        "model": {"first_token_ms": SOAK_TTFT * 1000, "tokens_per_s": round(1 / SOAK_CHUNK), "answer_tokens": len(ANSWER_500),
                  "nominal_ms": round(model_nominal_s(model, len(ANSWER_500)) * 1000, 1)},
        **reply_stats(everything, model),
        "replies_per_s": round(len(completed) / span, 2) if span else 0.0,
        **load,
        "per_platform": {
            name: {**reply_stats(traces[name], model),
                   "calls_per_reply": calls_per_reply(traces[name], sides[name].other_calls - before[name],
                                                      slack_read if name == "slack" else discord_read)}
            for name in sides
        },
        "moderation_calls_per_reply": round(checks / max(len(completed), 1), 2),
        "bench_loop_lag": lag.summary(),
        "idle_rss_before_mib": idle_before, "idle_rss_after_mib": idle_after, "peak_rss_mib": peak,
        "rss_window_s": window,
        "rss_first_minute_mib": baseline, "rss_end_mib": end,
        "rss_growth_pct": round((end - baseline) / baseline * 100, 1) if baseline and end else None,
        "rss_slope_mib_per_hour": _slope_mib_per_hour(samples, first_end - window, duration),
        "rss_samples": samples,
    }


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    metric: str
    value: Any
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("pass" if self.ok else "FAIL")


def _v(found: dict[str, Any] | None, key: str) -> float | None:
    return None if found is None else found.get(key)


def _p(found: dict[str, Any] | None) -> str:
    if not found:
        return "-"
    return f"{found['p50_ms']:g} / {found['p99_ms']:g}"


def _methods(calls: dict[str, Any]) -> str:
    return ", ".join(f"{m} {c:g}" for m, c in calls["by_method"].items()) or "-"


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    add = rows.append
    if (found := results.get("engine")) is not None:
        s = "engine"
        add(Row(s, f"overhead per reply p50 ms ({found['messages']:,} msgs)", found["p50_ms"], "<= 2", _at_most(found["p50_ms"], 2)))
        add(Row(s, "overhead per reply p99 ms", found["p99_ms"], "<= 10", _at_most(found["p99_ms"], 10)))
    for name in ("slack", "discord"):
        found = results.get(f"instant_{name}")
        if found is None:
            continue
        s = f"{name} instant"
        seq, burst = found[f"a_sequential_{found['sequential']}"], found[f"b_burst_{found['burst']}"]
        add(Row(s, f"{found['sequential']} sequential: event->final p50 ms", seq["p50_ms"], "< 20", seq["p50_ms"] < 20))
        add(Row(s, f"burst {found['burst']}: replies/s", burst["replies_per_s"], ">= 100", burst["replies_per_s"] >= 100))
        add(Row(s, "burst: event->final p50 / p99 ms", f"{burst['p50_ms']:g} / {burst['p99_ms']:g}"))
        add(Row(s, "burst: bot CPU ms/reply (bench)", f"{burst['cpu_ms_per_reply']:g} ({burst['bench_cpu_ms_per_reply']:g})"))
        add(Row(s, "platform calls/reply", found["c_calls_per_reply_total"], "<= 3", found["c_calls_per_reply_total"] <= 3))
        add(Row(s, "peak RSS MiB", found["d_peak_rss_mib"]))
    if (found := results.get("floor")) is not None:
        add(Row("floor", "bare aiohttp reader CPU ms/stream: 1 alone / "
                f"{found['concurrent']} at once", f"{found['single_cpu_ms_per_stream']:g} / {found['concurrent_cpu_ms_per_stream']:g}"))
    for name in ("slack", "discord"):
        found = results.get(f"stream_{name}")
        if found is None:
            continue
        s = f"{name} 500-token"
        add(Row(s, "idle RSS MiB (start-up + 1 reply)", found["idle_rss_mib"], "<= 60", _at_most(found["idle_rss_mib"], 60)))
        for latency, limit in (("0ms", 10), ("30ms", 70)):
            seq = found[f"sequential_{latency}"]
            label = f"seq {seq['replies']}, calls {latency}"
            add(Row(s, f"{label}: bot overhead p50 ms", _v(seq["bot_overhead"], "p50_ms"), f"<= {limit}",
                    _at_most(_v(seq["bot_overhead"], "p50_ms"), limit)))
            add(Row(s, f"{label}: event->first text p50/p99 ms", _p(seq["event_to_first_text"])))
            add(Row(s, f"{label}: event->final text p50/p99 ms", _p(seq["event_to_final_text"])))
            add(Row(s, f"{label}: bot CPU ms/reply", seq["bot_cpu_ms_per_reply"]))
            add(Row(s, f"{label}: before model / after model p50 ms",
                    f"{_v(seq['event_to_model_request'], 'p50_ms')} / {_v(seq['model_done_to_final_text'], 'p50_ms')}"))
        probe = found.get("read_probe")
        if probe:
            add(Row(s, f"reads on the hot path: overhead added when reads take {probe['read_latency_ms']:g} ms "
                       f"({probe['replies']} new people)", probe["added_overhead_p50_ms"], "< 50",
                    probe["added_overhead_p50_ms"] < 50))
        burst = found["burst"]
        label = f"burst {burst['replies']}"
        add(Row(s, f"{label}: replies/s", burst["replies_per_s"], ">= 50", burst["replies_per_s"] >= 50))
        add(Row(s, f"{label}: replies/s if the bot took no time", burst["model_bound_replies_per_s"]))
        add(Row(s, f"{label}: bot CPU ms/reply", burst["bot_cpu_ms_per_reply"], "<= 15", _at_most(burst["bot_cpu_ms_per_reply"], 15)))
        add(Row(s, f"{label}: bench CPU ms/reply (fakes); loop lag p99 ms",
                f"{burst['bench_cpu_ms_per_reply']:g}; {burst['bench_loop_lag'].get('p99_ms')}"))
        add(Row(s, f"{label}: peak RSS MiB", burst["peak_rss_mib"], "<= 120", _at_most(burst["peak_rss_mib"], 120)))
        add(Row(s, f"{label}: event->first text p50/p99 ms", _p(burst["event_to_first_text"])))
        add(Row(s, f"{label}: event->final text p50/p99 ms", _p(burst["event_to_final_text"])))
        add(Row(s, f"{label}: bot overhead p50/p99 ms", _p(burst["bot_overhead"])))
        calls = burst["calls_per_reply"]
        add(Row(s, f"{label}: platform calls/reply", calls["total"], "<= 5", _at_most(calls["total"], 5)))
        add(Row(s, f"{label}: platform reads/reply (on the path or not)", calls["reads"]))
        add(Row(s, f"{label}: calls/reply by method", _methods(calls)))
    if (found := results.get("moderation")) is not None:
        s = "moderation (slack)"
        add(Row(s, f"moderation calls/reply (in + out), {found['replies']} replies",
                f"{found['moderation_calls_per_reply']:g} ({found['moderation_input_calls_per_reply']:g} + "
                f"{found['moderation_output_calls_per_reply']:g})"))
        add(Row(s, "bot overhead p50/p99 ms (moderation on)", _p(found["bot_overhead"])))
        add(Row(s, "event->first text p50/p99 ms (moderation on)", _p(found["event_to_first_text"])))
        add(Row(s, "platform calls/reply", found["calls_per_reply"]["total"], "<= 5", _at_most(found["calls_per_reply"]["total"], 5)))
    if (found := results.get("soak")) is not None:
        s = "soak"
        add(Row(s, f"replies completed ({found['minutes']:g} min, both platforms)", f"{found['completed']}/{found['replies']}",
                "all", found["completed"] == found["replies"]))
        add(Row(s, "replies/s", found["replies_per_s"]))
        add(Row(s, "event->first text p50/p99 ms", _p(found["event_to_first_text"])))
        add(Row(s, "event->final text p50/p99 ms", _p(found["event_to_final_text"])))
        add(Row(s, "bot overhead p50/p99 ms", _p(found["bot_overhead"])))
        for name, per in found["per_platform"].items():
            add(Row(s, f"{name} calls/reply by method", f"{per['calls_per_reply']['total']:g}: {_methods(per['calls_per_reply'])}"))
        add(Row(s, "moderation calls/reply", found["moderation_calls_per_reply"]))
        add(Row(s, "bot CPU ms/reply (bench); bench loop lag p99 ms",
                f"{found['bot_cpu_ms_per_reply']:g} ({found['bench_cpu_ms_per_reply']:g}); {found['bench_loop_lag'].get('p99_ms')}"))
        add(Row(s, "peak RSS MiB", found["peak_rss_mib"]))
        add(Row(s, "RSS idle before / after MiB", f"{found['idle_rss_before_mib']:g} / {found['idle_rss_after_mib']:g}"))
        add(Row(s, "RSS first minute -> end MiB", f"{found['rss_first_minute_mib']} -> {found['rss_end_mib']}"))
        add(Row(s, "RSS growth over the soak %", found["rss_growth_pct"], "<= 10", _at_most(found["rss_growth_pct"], 10)))
    return rows


def render(rows: list[Row]) -> str:
    header = ("scenario", "metric", "value", "target", "result")
    table = [header] + [(r.scenario, r.metric, str(r.value), r.target or "-", r.verdict) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    lines = ["| scenario | metric | value | target | result |", "|---|---|---|---|---|"]
    lines += [f"| {r.scenario} | {r.metric} | {r.value} | {r.target or '-'} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def git_state() -> dict[str, Any]:
    """The commit measured and the files that differed from it, taken when the run starts."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False).stdout

    try:
        return {"commit": git("rev-parse", "--short", "HEAD").strip(),
                "uncommitted_files": [line[3:] for line in git("status", "--porcelain").splitlines()]}
    except OSError:
        return {"commit": "", "uncommitted_files": []}


def _meta(plan: Plan, began: float, profile: Path | None, git: dict[str, Any]) -> dict[str, Any]:
    return {
        "started": datetime.fromtimestamp(time.time() - (time.monotonic() - began), timezone.utc).isoformat(timespec="seconds"),
        **git, "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "plan": plan.__dict__, "duration_s": round(time.monotonic() - began, 1), "profiled": profile is not None,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and a 1-minute soak: a smoke check (< 3 min)")
    parser.add_argument("--soak-minutes", type=float, help="soak length (default 10, 1 with --quick); 100 conversations a minute")
    parser.add_argument("--soak-conversations", type=int, help="conversations in the soak (default 100 per minute)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the results (default {DEFAULT_JSON.relative_to(ROOT.parent)})")
    parser.add_argument("--only", help="comma-separated scenarios: engine,instant,stream,moderation,soak")
    parser.add_argument("--profile", type=Path, help="py-spy the bot during the 500-token bursts and the soak into this folder (slows it)")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown (for the README)")
    args = parser.parse_args()
    plan = Plan.make(args.quick, args.soak_minutes, args.soak_conversations)
    wanted = set((args.only or "engine,instant,stream,moderation,soak").split(","))
    began = time.monotonic()
    git = git_state()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    results: dict[str, Any] = {}
    steps: list[tuple[str, str, Callable[[], Any]]] = []
    if "engine" in wanted:
        steps.append(("engine", "engine overhead", lambda: scenario_engine(plan, log)))
    if "instant" in wanted:
        steps += [(f"instant_{n}", f"{n}: instant 50-chunk model", lambda n=n: scenario_instant(n, plan)) for n in ("slack", "discord")]
    if "stream" in wanted:
        steps.append(("floor", "floor: bare aiohttp reader", lambda: scenario_floor(plan)))
        steps += [(f"stream_{n}", f"{n}: 500-token stream", lambda n=n: scenario_stream(n, plan, args.profile))
                  for n in ("slack", "discord")]
    if "moderation" in wanted:
        steps.append(("moderation", "moderation on (slack)", lambda: scenario_moderation(plan)))
    if "soak" in wanted:
        steps.append(("soak", f"soak: {plan.soak_conversations} conversations over {plan.soak_minutes:g} min",
                      lambda: scenario_soak(plan, log, args.profile)))
    for key, title, step in steps:
        log(f"{title} ...")
        results[key] = await step()
        log(f"{title}: done")

    rows = rows_for(results)
    print(render(rows))
    if args.markdown:
        print()
        print(markdown(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"meta": _meta(plan, began, args.profile, git), "table": [r.__dict__ | {"verdict": r.verdict} for r in rows],
                "results": results}
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    failed = sum(1 for r in rows if r.ok is False)
    print(f"\n{len(rows)} rows, {sum(1 for r in rows if r.ok)} pass, {failed} fail; JSON: {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
