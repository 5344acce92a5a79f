"""Real files made in the test: PNGs, PDFs with text (or none), and SharedFiles backed by a coroutine."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chatbots.types import FileTooLarge, FileUnavailable, SharedFile


def png(width: int, height: int, note: bytes = b"") -> bytes:
    """A real grayscale PNG (every pixel black), with an optional tEXt chunk carrying note."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    text = chunk(b"tEXt", b"Comment\x00" + note) if note else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + text
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def pdf(pages: list[str]) -> bytes:
    """A real PDF with one page per string, each drawn as lines of text in Helvetica; "" makes a page with no text
    (as a scanned page has none)."""
    objects: list[bytes] = []
    kids = " ".join(f"{4 + 2 * n} 0 R" for n in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for page in pages:
        number = len(objects) + 1
        lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in page.splitlines()]
        drawn = "".join(f"({line}) Tj T* " for line in lines)
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {drawn}ET".encode() if page else b"q Q"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {number + 1} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
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


@dataclass
class Served:
    """Downloads the core made, by file name, for tests to check what was (not) fetched."""

    fetched: list[str] = field(default_factory=list)
    limits: list[tuple[int, float]] = field(default_factory=list)


def shared(name: str, data: bytes, mimetype: str = "", *, size: int | None = -1, served: Served | None = None,
           before: Callable[[], Awaitable[None]] | None = None) -> SharedFile:
    """A SharedFile whose download hands back data as an adapter would: up to max_bytes, else FileTooLarge."""

    async def download(max_bytes: int, timeout: float) -> bytes:
        if served is not None:
            served.fetched.append(name)
            served.limits.append((max_bytes, timeout))
        if before is not None:
            await before()
        if len(data) > max_bytes:
            raise FileTooLarge()
        return data

    return SharedFile(name, mimetype, len(data) if size == -1 else size, download)


def failing(name: str, mimetype: str, reason: str) -> SharedFile:
    async def download(max_bytes: int, timeout: float) -> bytes:
        raise FileUnavailable(reason)

    return SharedFile(name, mimetype, None, download)
