"""Turns run as background tasks after the platform is acknowledged; this keeps track of them for shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TurnTasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accepting = True

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run work in the background; refused (and closed) once shutdown has begun."""
        if not self.accepting:
            work.close()
            return None
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("turn task failed: %s", type(task.exception()).__name__)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace: float) -> None:
        """Stop accepting work; wait up to grace seconds for turns in flight, then cancel the rest."""
        self.accepting = False
        if not self._tasks:
            return
        done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cut %d replies still running after %.0fs", len(pending), grace)
            await asyncio.wait(pending)
