"""Shared files into what the model reads: images as data URLs, PDFs and text files as text, the rest as notes.

What a file is decides whether it is fetched at all (by its MIME type or name: a ZIP or a video never is); what
goes to the model as an image is decided by its bytes alone. Every file not read becomes a note that names it and
says why, shown to the person with the answer and given to the model, so nothing is dropped silently. File
contents are never logged nor written anywhere but the database.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ParamSpec, TypeVar

from ..config import Config
from ..types import FileTooLarge, FileUnavailable, SharedFile
from . import images, pdf_text

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

PARALLEL_DOWNLOADS = 4
"""Files of one message fetched at once."""
SNIFF_BYTES = 8192
"""Bytes looked at to tell text from binary data."""
OFF_LOOP_BYTES = 256 * 1024
"""Larger files are encoded and decoded on a worker thread, so the event loop never stalls on one."""
ADAPTER_GRACE = 1.0
"""Seconds added to the timeout a download is given, so the core's own deadline (which names its setting) comes first."""

IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})
TEXT_EXTENSIONS = frozenset({
    ".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".log", ".out",
    ".xml", ".html", ".htm", ".css", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".env", ".properties",
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".kts", ".scala", ".go", ".rs",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".m", ".mm", ".swift", ".rb", ".php", ".pl", ".pm",
    ".lua", ".r", ".jl", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".sql", ".graphql", ".proto", ".tf",
    ".hcl", ".dockerfile", ".gradle", ".cmake", ".mk", ".diff", ".patch", ".tex", ".bib", ".srt", ".vtt",
    ".vue", ".svelte", ".dart", ".ex", ".exs", ".erl", ".hs", ".clj", ".elm", ".nim", ".zig", ".v", ".sv",
})
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license", "procfile", "gemfile", "rakefile"})
TEXT_MIMETYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/x-javascript",
    "application/x-yaml", "application/yaml", "application/toml", "application/sql", "application/x-sh",
    "application/x-python", "application/x-ndjson", "application/csv", "application/x-httpd-php",
    "application/typescript", "application/graphql",
})


class Kind(StrEnum):
    """How a file reaches the model; the values are what the store keeps."""

    TEXT = "text"
    """Text read from it (a text file, a PDF), headed by its name."""
    IMAGE = "image"
    """An image part, as a data URL."""
    NOTE = "note"
    """Not read: the model is told the file was there and why it was not read."""


@dataclass(frozen=True, slots=True)
class FilePart:
    """One shared file as the model reads it."""

    kind: Kind
    name: str
    mimetype: str
    content: str
    """TEXT: '[File: name]' then its text; IMAGE: the `data:` URL; NOTE: a line saying it was not read."""
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_bytes: int
    max_files: int
    max_pages: int
    max_chars: int
    timeout: float

    @classmethod
    def from_settings(cls, settings: Config) -> FileLimits:
        return cls(settings.file_max_bytes, settings.file_max_count, settings.pdf_max_pages, settings.file_max_chars,
                   settings.file_timeout)


@dataclass(slots=True)
class ReadFiles:
    parts: list[FilePart]
    """In the order they were shared: read files, and notes for those not read."""
    notes: list[str]
    """Sentences for the person, one per file not (or not wholly) read."""


class _NotRead(Exception):
    """A file is not read: the reason finishes 'I couldn't read NAME: '."""


def display_name(name: str) -> str:
    """A file name safe to quote in chat and in the prompt: one line, no markup, bounded."""
    flat = "".join(ch if ch.isprintable() else " " for ch in name).strip() or "a file"
    for ch in "`*~<>|[]":  # markup in chat, or the prompt's own brackets; underscores inside words are plain text
        flat = flat.replace(ch, " " if ch in "<>|[]" else "")
    flat = " ".join(flat.split()) or "a file"
    return flat if len(flat) <= 80 else flat[:79] + "…"


def _extension(name: str) -> str:
    return posixpath.splitext(name.lower())[1]


def declared_kind(shared: SharedFile) -> str:
    """What the platform's MIME type or the name says the file is: 'image', 'pdf', 'text', or 'other'.

    Only a guess, used to decide whether to fetch it; an image is confirmed by its bytes."""
    mimetype = shared.mimetype.split(";", 1)[0].strip().lower()
    extension = _extension(shared.name)
    if mimetype in IMAGE_TYPES or extension in IMAGE_EXTENSIONS:
        return "image"
    if mimetype == "application/pdf" or extension == ".pdf":
        return "pdf"
    if (mimetype.startswith("text/") or mimetype in TEXT_MIMETYPES or mimetype.endswith(("+json", "+xml"))
            or extension in TEXT_EXTENSIONS or shared.name.lower() in TEXT_NAMES):
        return "text"
    return "other"


def megabytes(count: int) -> str:
    return f"{count / 1_000_000:g} MB" if count >= 1_000_000 else f"{count:,} bytes"


async def read_files(files: Sequence[SharedFile], limits: FileLimits, no_images: str | None = None) -> ReadFiles:
    """Fetch and read a message's files, a few at a time; never raises for a file's sake.

    no_images: why images are not sent (the model or the setting), or None to send them."""
    taken = list(files[: limits.max_files])
    notes: list[str] = []
    slots = asyncio.Semaphore(PARALLEL_DOWNLOADS)

    async def one(shared: SharedFile) -> tuple[FilePart, str | None]:
        name = display_name(shared.name)
        async with slots:
            try:
                return await _read(shared, name, limits, no_images)
            except _NotRead as reason:
                return _note(shared, name, str(reason)), f"I couldn't read {name}: {reason}."

    results = await asyncio.gather(*(one(shared) for shared in taken))
    parts = []
    for part, note in results:
        parts.append(part)
        if note is not None:
            notes.append(note)
    if len(files) > limits.max_files:
        skipped = [display_name(shared.name) for shared in files[limits.max_files:]]
        notes.append(f"I only read the first {limits.max_files} files of your message (`CHATBOTS_FILE_MAX_COUNT`), "
                     f"not {', '.join(skipped[:5])}{' and more' if len(skipped) > 5 else ''}.")
        parts.extend(_note(shared, display_name(shared.name), "over the number of files read per message")
                     for shared in files[limits.max_files:])
    return ReadFiles(parts, notes)


def _note(shared: SharedFile, name: str, reason: str) -> FilePart:
    return FilePart(Kind.NOTE, name, shared.mimetype, f"[File: {name} was shared but not read: {reason}]")


async def _read(shared: SharedFile, name: str, limits: FileLimits, no_images: str | None) -> tuple[FilePart, str | None]:
    declared = declared_kind(shared)
    if declared == "other" and shared.mimetype.lower().startswith("image/"):
        raise _NotRead("not an image format I can read (I read PNG, JPEG, GIF and WebP)")
    if declared == "other":
        raise _NotRead("not a file type I can read (I read images, PDFs and text files)")
    if declared == "image" and no_images is not None:
        raise _NotRead(no_images)
    over = f"it is over the {megabytes(limits.max_bytes)} limit per file (`CHATBOTS_FILE_MAX_BYTES`)"
    if shared.size is not None and shared.size > limits.max_bytes:
        raise _NotRead(over)
    data = await _download(shared, limits, over)
    if images.sniff(data) is not None:
        if no_images is not None:
            raise _NotRead(no_images)
        return await _image(data, shared, name), None
    if declared == "image":
        raise _NotRead("it is not a PNG, JPEG, GIF or WebP image")
    if declared == "pdf" or data.startswith(b"%PDF-"):
        return await _pdf(data, shared, name, limits)
    return await _text(data, shared, name, limits)


async def _download(shared: SharedFile, limits: FileLimits, over: str) -> bytes:
    try:
        # The core keeps the time limit, so the note can name it; the adapter's own, a little later, is a backstop.
        async with asyncio.timeout(limits.timeout):
            data = await shared.download(limits.max_bytes, limits.timeout + ADAPTER_GRACE)
    except FileTooLarge:
        raise _NotRead(over) from None
    except FileUnavailable as unavailable:
        raise _NotRead(f"I couldn't download it ({unavailable.reason})") from None
    except TimeoutError:
        raise _NotRead(f"it took longer than {limits.timeout:g} s to download (`CHATBOTS_FILE_TIMEOUT`)") from None
    except Exception as error:  # noqa: BLE001 - one broken download must not fail the turn
        log.warning("a file download failed: %s", type(error).__name__)
        raise _NotRead("I couldn't download it") from None
    if len(data) > limits.max_bytes:
        raise _NotRead(over)
    return data


async def _image(data: bytes, shared: SharedFile, name: str) -> FilePart:
    info = images.inspect(data)
    if info is None:
        raise _NotRead("it is not a well-formed PNG, JPEG, GIF or WebP image")
    url = await _off_loop(len(data), _data_url, info.mimetype, data)
    return FilePart(Kind.IMAGE, name, info.mimetype, url, info.width, info.height)


def _data_url(mimetype: str, data: bytes) -> str:
    """The one encoded copy of an image: the model, moderation and the store all use this string."""
    return f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"


async def _pdf(data: bytes, shared: SharedFile, name: str, limits: FileLimits) -> tuple[FilePart, str | None]:
    try:
        found = await pdf_text.extract(data, limits.max_pages, limits.max_chars)
    except pdf_text.PdfUnreadable as unreadable:
        raise _NotRead(str(unreadable)) from None
    if not found.text.strip():
        if found.pages > found.pages_read:
            raise _NotRead(f"its first {found.pages_read} pages have no text I can read (`CHATBOTS_PDF_MAX_PAGES`)")
        raise _NotRead("it has no text I can read (a scanned PDF, perhaps; I can't read text in pictures)")
    note = None
    if found.cut:
        note = (f"I only read the first {limits.max_chars:,} characters of {name} (`CHATBOTS_FILE_MAX_CHARS`).")
    elif found.pages > found.pages_read:
        note = (f"I only read the first {found.pages_read} of the {found.pages} pages of {name} "
                "(`CHATBOTS_PDF_MAX_PAGES`).")
    return FilePart(Kind.TEXT, name, "application/pdf", f"[File: {name}]\n{found.text}"), note


async def _text(data: bytes, shared: SharedFile, name: str, limits: FileLimits) -> tuple[FilePart, str | None]:
    if b"\x00" in data[:SNIFF_BYTES]:
        raise _NotRead("it looks like binary data, not text")
    # No character takes more than 4 UTF-8 bytes: what lies beyond is over the limit anyway, and never decoded.
    head = data[: limits.max_chars * 4 + 4]
    text = await _off_loop(len(head), _decode, head)
    cut = len(text) > limits.max_chars or len(data) > len(head)
    text = text[: limits.max_chars]
    note = f"I only read the first {limits.max_chars:,} characters of {name} (`CHATBOTS_FILE_MAX_CHARS`)." if cut else None
    mimetype = shared.mimetype.split(";", 1)[0].strip() or "text/plain"
    return FilePart(Kind.TEXT, name, mimetype, f"[File: {name}]\n{text}"), note


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace").removeprefix("\ufeff")


async def _off_loop(size: int, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)
