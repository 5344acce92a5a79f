"""Helpers for tests of shared files: real file bytes made in the test, and what the engine is handed."""

from __future__ import annotations

import asyncio
import struct
import zlib
from typing import Any

from chatbots.engine import Engine
from chatbots.types import Inbound


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


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
