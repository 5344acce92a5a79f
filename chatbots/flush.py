"""Work that runs when there is something new, at most once per interval: throttled renders, batched checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class PeriodicFlush:
    """Runs step after each poke, one at a time under lock, then waits interval() before the next.

    A step returning False did nothing yet (waiting for more input), so the next poke runs it at once. stop() lets
    a step in flight complete and ends the loop between steps: cancelling a step midway could leave a platform
    message the bot does not know about, or a verdict unrecorded.
    """

    def __init__(
        self,
        step: Callable[[], Awaitable[bool | None]],
        interval: Callable[[], float],
        lock: asyncio.Lock,
        *,
        before: Callable[[], Awaitable[None]] | None = None,
        until: Callable[[], bool] = lambda: False,
    ) -> None:
        self.step = step
        self.interval = interval
        self.lock = lock
        self.before = before
        self.until = until
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def poke(self) -> None:
        """There is something new: run step soon (the loop starts on the first poke)."""
        self._dirty.set()
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        if self.before is not None:
            await self.before()
        while not self.until():
            await self._dirty.wait()
            self._dirty.clear()
            async with self.lock:
                done = await self.step()
            if done is not False:
                await asyncio.sleep(self.interval())  # the rate or call budget itself, not a wait for another task

    async def stop(self) -> None:
        """End the loop once any step in flight has completed; no step runs after this returns."""
        self._stopped = True
        if self._task is None:
            return
        async with self.lock:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
