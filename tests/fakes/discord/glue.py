"""discord.py glue: point the library at the fake and run a client against it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

if TYPE_CHECKING:
    from . import FakeDiscord


@contextlib.contextmanager
def redirect_discordpy(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's REST base and gateway at ``fake`` for the block, then restore them.

    Both are class attributes, so this affects every client in the process (tests only).
    """
    import discord.gateway
    import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = fake.gateway_url
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def running_client(fake: FakeDiscord, client: Any, *, timeout: float = 10.0) -> AsyncIterator[asyncio.Task[None]]:
    """Log ``client`` in against ``fake``, run it until on_ready, yield its connect task, then close it.

    Why: a parser KeyError kills the connect task silently; this re-raises whatever the task died
    with, both while waiting for ready and on exit, so a broken payload fails the test loudly.
    Use inside :func:`redirect_discordpy`. Create the client with a small ``guild_ready_timeout``:
    discord.py always waits that long after the last GUILD_CREATE before on_ready (default 2 s).
    """
    try:
        await client.login(fake.token)
    except BaseException:
        await client.close()  # login opened an HTTP session; don't leak it
        raise
    task: asyncio.Task[None] = asyncio.ensure_future(client.connect(reconnect=True))
    ready = asyncio.ensure_future(client.wait_until_ready())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what killed it
            raise AssertionError("client.connect() returned before on_ready")
        if ready not in done:
            raise AssertionError(f"client not ready after {timeout}s")
        yield task
        if task.done():
            task.result()
    finally:
        ready.cancel()
        await client.close()
        try:
            await asyncio.wait_for(task, 5.0)
        except asyncio.CancelledError:
            pass
