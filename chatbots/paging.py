"""Split a long answer into messages a platform accepts, at natural boundaries, with code fences balanced."""

from __future__ import annotations

FENCE = "```"


def open_fence(text: str, already_open: str | None = None) -> str | None:
    """The code fence still open at the end of text (its opening line, e.g. "```python"), if any."""
    fence = already_open
    for line in text.split("\n"):
        if line.lstrip().startswith(FENCE):
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


def split_message(text: str, limit: int) -> list[str]:
    """Parts of at most limit characters; never inside a word unless one word is longer than a whole part.

    A part that ends inside a code block closes it, and the next part reopens it with the same language,
    so every part renders on its own.
    """
    if limit < 16:
        raise ValueError("limit too small to hold a code fence")
    parts: list[str] = []
    fence: str | None = None
    rest = text
    while rest:
        prefix = f"{fence}\n" if fence else ""
        if len(prefix) + len(rest) <= limit:
            parts.append(prefix + rest)
            break
        room = limit - len(prefix) - len(FENCE) - 1  # keep room to close a fence
        cut = _cut(rest, room)
        piece, rest = rest[:cut], rest[cut:]
        fence = open_fence(piece, fence)
        body = (prefix + piece).rstrip("\n") if fence else prefix + piece.rstrip()
        parts.append(body + f"\n{FENCE}" if fence else body)
        if fence:
            rest = rest.removeprefix("\n")
    return [part for part in parts if part.strip()]
