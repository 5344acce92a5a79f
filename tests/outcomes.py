"""What a platform service did with each event, recorded from its observers, for tests to wait on (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Outcomes(list[str]):
    """A list of outcomes that can be awaited: wait(n) returns once n have been recorded."""

    def __init__(self, keep: Callable[[str], bool] = lambda outcome: True) -> None:
        super().__init__()
        self.keep = keep
        self._changed = asyncio.Event()

    def record(self, outcome: str) -> None:
        if self.keep(outcome):
            self.append(outcome)
            self._changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[str]:
        try:
            async with asyncio.timeout(timeout):
                while len(self) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"waited for {count} events to be handled, saw {list(self)}") from None
        return self[:count]
