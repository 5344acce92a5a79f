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


BASICS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
"""What any process needs from its surroundings; none of them is read by the bot."""


def clean_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The basics, PORT and env: nothing leaks in from the test run's own environment (a signing secret, say)."""
    return {**{name: os.environ[name] for name in BASICS if name in os.environ}, "PORT": str(port), **env}


@asynccontextmanager
async def bot_process(env: dict[str, str], port: int, **options: object) -> AsyncIterator[asyncio.subprocess.Process]:
    """`chatbots run` in its own process with only env (see clean_env), ready once /healthz answers.

    Terminated on exit if still running. Options go to create_subprocess_exec (cwd, stderr, ...).
    """
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "chatbots.cli", "run",
                                                   env=clean_env(env, port), **options)  # type: ignore[arg-type]
    try:
        await wait_healthy(process, port)
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def bot_exit(env: dict[str, str], port: int, timeout: float = 30.0, **options: object) -> tuple[int, str]:
    """`chatbots run` expected to stop by itself (a bad configuration): its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", "run", env=clean_env(env, port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, **options)  # type: ignore[arg-type]
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")
