"""`chatbots chat`: a terminal conversation through the same engine and store the platforms use."""

from __future__ import annotations

import asyncio
import getpass
import mimetypes
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .engine import Engine
from .types import ConversationKey, FileTooLarge, FileUnavailable, Inbound, SharedFile

PLATFORM = "console"
WORKSPACE = "local"
CHANNEL = "terminal"


class ConsoleReply:
    """Prints the answer as it streams; the console has no message ids."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def start(self) -> None:
        pass

    async def append(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    async def finish(self) -> list[str]:
        self.out.write("\n")
        self.out.flush()
        return []

    async def fail(self, notice: str) -> list[str]:
        self.out.write(f"\n[{notice}]\n")
        self.out.flush()
        return []


def local_file(path: str) -> SharedFile:
    """A file on disk as a shared file: read only when the engine fetches it, within the same limits as any other."""
    found = Path(path)
    if not found.is_file():
        raise FileNotFoundError(f"no file at {path}")
    mimetype = mimetypes.guess_type(found.name)[0] or ""

    async def download(max_bytes: int, timeout: float) -> bytes:
        def read() -> bytes:
            with found.open("rb") as handle:
                return handle.read(max_bytes + 1)

        try:
            data = await asyncio.to_thread(read)
        except OSError as error:
            raise FileUnavailable(f"it could not be opened ({error.strerror or type(error).__name__})") from None
        if len(data) > max_bytes:
            raise FileTooLarge()
        return data

    return SharedFile(found.name, mimetype, found.stat().st_size, download)


async def conversation_key(engine: Engine, new: bool) -> ConversationKey:
    """The conversation to continue: the last one in this database, unless a new one is asked for."""
    thread = None if new else await engine.store.latest_thread(PLATFORM, WORKSPACE, CHANNEL)
    return ConversationKey(PLATFORM, WORKSPACE, CHANNEL, thread or f"{time.time():.6f}")


async def chat(
    engine: Engine, *, new: bool, prompt: str | None, stdin: TextIO, out: TextIO, files: Sequence[SharedFile] = ()
) -> int:
    """Piped input (or a prompt argument) is one message and one answer; a terminal gets a conversation.

    files go with the first message."""
    key = await conversation_key(engine, new)
    user = getpass.getuser()
    sequence = 0
    pending = tuple(files)

    async def send(text: str) -> str:
        nonlocal sequence, pending
        sequence += 1
        message = Inbound(key, f"{time.time():.6f}-{sequence}", user, user, text, files=pending)
        pending = ()
        result = await engine.handle(message, ConsoleReply(out))
        return result.status

    if not stdin.isatty() or prompt is not None:
        piped = "" if stdin.isatty() else stdin.read()
        text = "\n\n".join(part for part in (piped.strip(), (prompt or "").strip()) if part)
        if not text and not pending:
            print("Nothing to send: pipe some text in or give a prompt.", file=sys.stderr)
            return 2
        return 0 if await send(text) == "answered" else 1

    print("Chatting with the model. Empty line or Ctrl-D to quit; `chatbots chat --new` starts over.", file=out)
    loop = asyncio.get_running_loop()
    while True:
        try:
            line = await loop.run_in_executor(None, input, "> ")
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        if not line.strip():
            return 0
        await send(line)
