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


def pdf(*pages: str) -> bytes:
    """A valid PDF with one line of text (Helvetica, ASCII) on each page."""
    objects: list[bytes] = []
    count = len(pages)
    page_ids = [3 + 2 * n for n in range(count)]
    font_id = 3 + 2 * count
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{n} 0 R" for n in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    for n, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} "
                       f"0 R >> >> /Contents {page_ids[n] + 1} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
