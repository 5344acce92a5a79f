"""The throttled reply both platforms share: text accumulates, and the platform is updated at most once per interval."""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod

from chatbots.flush import PeriodicFlush

log = logging.getLogger(__name__)

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def printable(text: str) -> str:
    """Text fit to send: control characters but newline and tab removed (carriage returns too, so Windows line
    ends read as newlines), and lone surrogates, which no platform can encode, replaced by U+FFFD."""
    text = _UNPRINTABLE.sub("", text)
    return _LONE_SURROGATE.sub("\ufffd", text) if not text.isascii() else text


class ThrottledReply(ABC):
    """A Reply that shows the answer through periodic renders of the whole text so far.

    The first piece of text is shown at once; later pieces are batched so the platform sees about one call per
    interval, within its rate limits, however fast the model streams. A render in flight is never cancelled:
    cancelling a post midway could leave a message on the platform that the bot does not know about.
    """

    interval: float = 1.0
    thinking_delay: float = 0.3
    """An answer that starts sooner than this needs no "thinking" indicator: one platform call saved."""

    def __init__(self) -> None:
        self._text = ""
        self._pieces: list[str] = []  # appended since the text was last read
        self._render_lock = asyncio.Lock()
        self._flusher = PeriodicFlush(
            self._interim_render, lambda: self.interval, self._render_lock, before=self._settle_thinking
        )
        self._first_text = asyncio.Event()
        self._thinker: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        """Everything appended so far; pieces are folded in once, not joined again for every render."""
        if self._pieces:
            self._text += "".join(self._pieces)
            self._pieces.clear()
        return self._text

    async def start(self) -> None:
        self._thinker = asyncio.create_task(self._think_unless_quick())

    async def _think_unless_quick(self) -> None:
        try:
            await asyncio.wait_for(self._first_text.wait(), self.thinking_delay)
        except TimeoutError:
            await self._thinking()

    async def _settle_thinking(self) -> None:
        """Before the first text shows: no indicator starts any more, and one being set has landed."""
        self._first_text.set()
        if self._thinker is not None:
            # wait(), not await: a cancellation of this task must stay ours, never pass to (and die in) the thinker.
            await asyncio.wait({self._thinker})

    async def append(self, text: str) -> None:
        self._pieces.append(printable(text))
        self._flusher.poke()

    async def finish(self) -> list[str]:
        await self._flusher.stop()
        await self._settle_thinking()
        async with self._render_lock:
            await self._render(self.text, final=True)
        return self.message_ids()

    async def fail(self, notice: str) -> list[str]:
        await self._flusher.stop()
        await self._settle_thinking()
        shown = self.text  # never trimmed: streamed platforms have already shown this exact prefix
        notice = self.format_notice(printable(notice))
        async with self._render_lock:
            # Always shown + more: renders keep what they already did and work on what is new.
            await self._render(f"{shown}\n\n{notice}" if shown.strip() else shown + notice, final=True)
        return self.message_ids()

    async def _interim_render(self) -> bool | None:
        """One periodic render of everything so far; False when nothing could be shown yet."""
        try:
            return await self._render(self.text, final=False)
        except Exception as error:  # noqa: BLE001 - the final render retries with the whole text
            log.warning("interim update failed: %s", type(error).__name__)
            return True

    def _render_again(self) -> None:
        """The last interim render left something unshown: render once more next interval, even without new text."""
        self._flusher.poke()

    def format_notice(self, notice: str) -> str:
        """In italics, line by line: neither Slack's nor Discord's italics span a line break."""
        return "\n".join(f"_{line.strip()}_" if line.strip() else "" for line in notice.split("\n"))

    async def _thinking(self) -> None:
        """Show that an answer is coming; platforms override."""

    @abstractmethod
    async def _render(self, text: str, final: bool) -> bool | None:
        """Make the platform show text (everything so far); final is the last call.

        Returns False when nothing could be shown yet (so the next piece is tried at once, not after interval).
        """

    @abstractmethod
    def message_ids(self) -> list[str]:
        """Platform ids of the messages holding the reply."""
