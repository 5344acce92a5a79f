"""Shared pieces of the platform benchmarks: the bot as a real subprocess, percentiles, peak memory."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summarise_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def bot_process(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`chatbots run` as its own process, ready once /healthz answers."""
    full_env = {**os.environ, "PORT": str(port), "CHATBOTS_LOG_LEVEL": "WARNING", **env}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "chatbots.cli", "run", env=full_env)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if process.returncode is not None:
                    raise RuntimeError(f"bot exited with {process.returncode}")
                await asyncio.sleep(0.05)  # polling a starting process: nothing to wait on
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
