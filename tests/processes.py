"""`chatbots run` as a real process, for tests of signals and restarts, and for the benchmarks."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_healthy(process: asyncio.subprocess.Process, port: int, timeout: float = 20.0) -> None:
    """Poll /healthz until the starting process answers (there is nothing else to wait on)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"bot exited with {process.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


@asynccontextmanager
async def bot_process(env: dict[str, str], port: int, **options: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """`chatbots run` in its own process, ready once /healthz answers; terminated on exit if still running."""
    full_env = {**os.environ, "PORT": str(port), "CHATBOTS_LOG_LEVEL": "WARNING", **env}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "chatbots.cli", "run", env=full_env, **options)  # type: ignore[arg-type]
    try:
        await wait_healthy(process, port)
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
