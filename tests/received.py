"""What the engine is handed, recorded on the way in: for tests of what a platform makes of an event."""

from __future__ import annotations

import asyncio
from typing import Any

from chatbots.engine import Engine
from chatbots.types import Inbound


class Received:
    """Every Inbound the engine is handed, recorded on the way in; the engine still handles each one."""

    def __init__(self, engine: Engine) -> None:
        self.inbounds: list[Inbound] = []
        self._changed = asyncio.Event()
        handle = engine.handle

        async def recording(inbound: Inbound, reply: Any) -> Any:
            self.inbounds.append(inbound)
            self._changed.set()
            return await handle(inbound, reply)

        engine.handle = recording  # type: ignore[method-assign]

    async def wait(self, count: int = 1, timeout: float = 5.0) -> list[Inbound]:
        """The first `count` Inbounds, once the engine has been handed that many."""
        async with asyncio.timeout(timeout):
            while len(self.inbounds) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.inbounds[:count]

