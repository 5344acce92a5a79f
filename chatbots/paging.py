"""Split a long answer into messages a platform accepts, at natural boundaries, with code fences balanced."""

from __future__ import annotations

FENCE = "```"
FILLER = "…"
"""Stands in for a message that has nothing left to show (a platform refuses empty text)."""


def _toggles(line: str) -> bool:
    """A line that opens or closes a code block: it starts with a fence and holds no second one ("```x```" is inline)."""
    return line.lstrip().startswith(FENCE) and line.count(FENCE) % 2 == 1


def open_fence(text: str, already_open: str | None = None) -> str | None:
    """The code fence still open at the end of text (its opening line, e.g. "```python"), if any."""
    fence = already_open
    for line in text.split("\n"):
        if _toggles(line):
            fence = None if fence else line.strip().split()[0][:20]  # "```python", bounded
    return fence


def _cut(text: str, room: int) -> int:
    """Where to end a part of at most room characters: a paragraph, else a line, else a space, else hard."""
    window = text[:room]
    for separator, earliest in (("\n\n", room // 2), ("\n", room // 3), (" ", 1)):
        at = window.rfind(separator, earliest)
        if at > 0:
            return at + len(separator)
    return room


def _first_part(rest: str, limit: int, fence: str | None) -> tuple[str, int, str | None]:
    """The first part of a rest too long for one part (a code block opened by fence still open before it):
    the part, how much of rest it used, and the fence still open after it."""
    prefix = f"{fence}\n" if fence else ""
    room = limit - len(prefix) - len(FENCE) - 1  # keep room to close a fence
    cut = _cut(rest, room)
    piece = rest[:cut]
    after = open_fence(piece, fence)
    if after:
        if rest.startswith("\n", cut):
            cut += 1
        return (prefix + piece).rstrip("\n") + f"\n{FENCE}", cut, after
    return prefix + piece.rstrip(), cut, None


def split_message(text: str, limit: int, fence: str | None = None) -> list[str]:
    """Parts of at most limit characters; never inside a word unless one word is longer than a whole part.

    A part that ends inside a code block closes it, and the next part reopens it with the same language,
    so every part renders on its own. fence: a code block already open before text (continuing a split).
    """
    if limit < 16:
        raise ValueError("limit too small to hold a code fence")
    parts: list[str] = []
    rest = text
    while rest:
        prefix = f"{fence}\n" if fence else ""
        if len(prefix) + len(rest) <= limit:
            parts.append(prefix + rest)
            break
        part, used, fence = _first_part(rest, limit, fence)
        parts.append(part)
        rest = rest[used:]
    return [part for part in parts if part.strip()]


class Pager:
    """The parts of a growing text, where each render re-splits only the part still growing.

    Text handed to settle() never changes. Once more of it waits than one part holds, the next part's cut
    lies wholly inside it, so that part is cut once and kept. The parts are exactly split_message's.
    """

    def __init__(self, limit: int) -> None:
        if limit < 16:
            raise ValueError("limit too small to hold a code fence")
        self.limit = limit
        self._done: list[str] = []
        self._rest = ""  # settled text not yet in a finished part
        self._fence: str | None = None

    @property
    def finished(self) -> int:
        """How many leading parts can no longer change."""
        return len(self._done)

    def settle(self, text: str) -> None:
        """Add text that will never change, cutting off every part it completes."""
        self._rest += text
        while len(self._rest) + (len(self._fence) + 1 if self._fence else 0) > self.limit:
            part, used, self._fence = _first_part(self._rest, self.limit, self._fence)
            if part.strip():
                self._done.append(part)
            self._rest = self._rest[used:]

    def parts(self, tail: str = "", at_least: int = 0) -> list[str]:
        """All parts of the settled text followed by tail (text that may still change).

        at_least: never fewer parts than this (those already shown); a shorter rendering is spread over
        them, so no message is left showing text that moved elsewhere.
        """
        current = split_message(self._rest + tail, self.limit, self._fence)
        if len(self._done) + len(current) < at_least:
            current = _spread(current, at_least - len(self._done), self.limit)
        return self._done + current


def _spread(parts: list[str], count: int, limit: int) -> list[str]:
    """At least count parts: the longest is split in two until there are enough (a filler when none can split)."""
    parts = list(parts)
    while len(parts) < count:
        if not parts:
            parts.append(FILLER)
            continue
        longest = max(range(len(parts)), key=lambda index: len(parts[index]))
        halves = split_message(parts[longest], max(16, len(parts[longest]) // 2 + len(FENCE) + 1))
        if len(halves) < 2:
            parts.append(FILLER)
        else:
            parts[longest : longest + 1] = halves
    return parts
