"""Text out of PDFs with pypdf, off the event loop and bounded by pages and characters."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_PARALLEL = 2
"""PDFs parsed at once in this process: parsing is CPU-bound and holds a document's objects in memory."""
_slots = threading.BoundedSemaphore(MAX_PARALLEL)
WAIT = 60.0
"""Seconds a turn waits for a PDF's text before answering without it (a thread cannot be stopped; it finishes alone)."""


@dataclass(frozen=True, slots=True)
class PdfText:
    text: str
    pages: int
    """Pages in the document."""
    pages_read: int
    cut: bool
    """The character limit stopped the reading."""


class PdfUnreadable(Exception):
    """Not a PDF pypdf can open (damaged, or encrypted with a password)."""


async def extract(data: bytes, max_pages: int, max_chars: int) -> PdfText:
    """The text of the first max_pages pages, at most max_chars characters, read on a worker thread."""
    try:
        async with asyncio.timeout(WAIT):
            return await asyncio.to_thread(_extract_bounded, data, max_pages, max_chars)
    except TimeoutError:
        log.warning("reading a PDF took over %g s; answering without it", WAIT)
        raise PdfUnreadable("it took too long to read") from None


def _extract_bounded(data: bytes, max_pages: int, max_chars: int) -> PdfText:
    with _slots:
        return _extract(data, max_pages, max_chars)


def _extract(data: bytes, max_pages: int, max_chars: int) -> PdfText:
    from pypdf import PdfReader  # loaded on the first PDF: most processes never see one
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings quote the document's own strings
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfUnreadable("it is protected with a password")
        pages = len(reader.pages)
        texts: list[str] = []
        length = read = 0
        for page in reader.pages[:max_pages]:
            text = (page.extract_text() or "").strip()
            read += 1
            if text:
                texts.append(text)
                length += len(text) + 2
            if length >= max_chars:
                break
    except PdfUnreadable:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError,
            NotImplementedError, AssertionError, OSError, ZeroDivisionError) as error:
        log.info("a PDF could not be read: %s", type(error).__name__)
        raise PdfUnreadable("it is damaged or not really a PDF") from None
    text = "\n\n".join(texts)
    cut = len(text) > max_chars or (length >= max_chars and read < min(pages, max_pages))
    return PdfText(text[:max_chars], pages, read, cut)
