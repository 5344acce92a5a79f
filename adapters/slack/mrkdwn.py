"""Markdown (what models write) to Slack mrkdwn (what chat.postMessage's text renders).

The model's text is untrusted. Every "&", "<" and ">" of it is escaped, so the only control sequences in the
result are the links made here (``<https://...>``, checked to hold no "<", ">" or "|"): no text can mention
anyone (<!channel>, <!here>, <@U…>, <!subteam^…>) or hide where a link goes. Conversion is one pass per line,
linear in the text; code spans and links are kept by position, never looked up by a marker in the text, so no
input can collide with the machinery or stall it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbots.paging import FENCE, Pager

from ..streaming import printable

SOFT_LINE = 2_000
"""A line longer than this is converted in pieces (cut at spaces), so the line still being written costs a
bounded amount per render. Markup spanning such a cut stays as typed."""

_FENCE_OPEN = re.compile(r" {0,3}`{3,}[^`]*")  # CommonMark: an info string holds no backtick
_FENCE_CLOSE = re.compile(r" {0,3}`{3,}[ \t]*")
_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+")
_RULE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_BULLET = re.compile(r"([ \t]*)[-*+][ \t]+(?=\S)")
_BACKTICKS = re.compile(r"`+")
_URL = r"https?://(?:[^()\s<>|\\\"]|\([^()\s<>|\\\"]*\)){1,2000}"
_LINK = re.compile(rf"\[(?P<label>[^\[\]\n]{{1,1000}})\]\((?P<url>{_URL})\)|<(?P<bare>https?://[^\s<>|\\\"]{{1,2000}})>")
_DELIMITERS = re.compile(r"\*+|_+|~+")
_MARKUP = re.compile(r"[`\[<*_~]")
_ATOM = "\x00"  # stands for a code span or link while pairing emphasis; found by position, never by value
RULE = "──────────"


def escape(text: str) -> str:
    """Slack's three control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(markdown: str) -> str:
    """Convert the Markdown a model writes. Code is kept verbatim; half-written markup (mid-stream) stays as typed."""
    lines = _Lines()
    settled, done, midline = lines.settle(markdown, 0, False)
    return settled + lines.tail(markdown[done:], midline)


class MrkdwnPages:
    """The mrkdwn messages of an answer still being written, converting and splitting only what is new.

    Whole lines convert once (a line's mrkdwn never changes once it ends); only the line still being
    written is converted again per render, and only the message still growing is split again.
    """

    def __init__(self, limit: int) -> None:
        self._lines = _Lines()
        self._pager = Pager(limit)
        self._done = 0  # characters of the answer converted for good
        self._midline = False

    @property
    def finished(self) -> int:
        """How many leading messages can no longer change."""
        return self._pager.finished

    def messages(self, markdown: str, at_least: int = 0) -> list[str]:
        settled, self._done, self._midline = self._lines.settle(markdown, self._done, self._midline)
        self._pager.settle(settled)
        return self._pager.parts(self._lines.tail(markdown[self._done :], self._midline), at_least)


class _Lines:
    """Line-by-line conversion; the only state one line leaves for the next is whether a code block is open."""

    def __init__(self) -> None:
        self.code = False

    def settle(self, text: str, start: int, midline: bool) -> tuple[str, int, bool]:
        """Convert the whole lines (and long-line pieces) of text from start: (mrkdwn, where it stopped, midline)."""
        out: list[str] = []
        while True:
            newline = text.find("\n", start, start + SOFT_LINE + 1)
            if newline != -1:
                out.append(self.line(printable(text[start:newline]), midline) + "\n")
                start, midline = newline + 1, False
            elif len(text) - start > SOFT_LINE:
                window = text[start : start + SOFT_LINE]
                cut = max(window.rfind(" "), window.rfind("\t")) + 1 or SOFT_LINE
                out.append(self.line(printable(window[:cut]), midline))
                start, midline = start + cut, True
            else:
                return "".join(out), start, midline

    def tail(self, text: str, midline: bool) -> str:
        """The line still being written, converted without committing to it; an open code block is closed."""
        was_code = self.code
        text = printable(text)
        try:
            if not was_code and not midline and _FENCE_OPEN.fullmatch(text):
                return escape(text)  # a fence still being typed: its block has nothing in it yet
            out = self.line(text, midline)
            if self.code:
                out += f"\n{FENCE}" if text else FENCE
            return out
        finally:
            self.code = was_code

    def line(self, line: str, midline: bool = False) -> str:
        if not self.code and (midline or not line or line[0] not in " \t`#-*+_"):
            return _inline(line)
        if self.code:
            if not midline and _FENCE_CLOSE.fullmatch(line):
                self.code = False
                return FENCE
            if not midline and line.rstrip().endswith(FENCE):  # "last line```" closes the block too
                self.code = False
                return f"{escape(line.rstrip()[: -len(FENCE)])}\n{FENCE}"
            return escape(line)
        if midline:
            return _inline(line)
        if _FENCE_OPEN.fullmatch(line):
            self.code = True
            return FENCE  # the language is dropped: mrkdwn has no highlighting
        if _RULE.fullmatch(line):
            return RULE
        heading = _HEADING.match(line)
        if heading:
            title = _heading_text(line[heading.end() :])
            if title:
                return f"*{_inline(title, emphasis=False)}*"
        bullet = _BULLET.match(line)
        if bullet:
            return f"{bullet.group(1)}• {_inline(line[bullet.end() :])}"
        return _inline(line)


def _heading_text(rest: str) -> str:
    """A heading's text without its optional closing #s and the bold markers models like to add."""
    title = rest.strip(" \t")
    if title.endswith("#"):
        bare = title.rstrip("#")
        if not bare or bare[-1] in " \t":
            title = bare.rstrip(" \t")
    return title.strip("*")


def _link(label: str, url: str) -> str:
    """A link that always shows where it goes: the label alone only when it is the address itself."""
    target = escape(url)
    shown = label.strip()
    address = url.split("://", 1)[1]
    if shown in (url, url.rstrip("/"), address, address.rstrip("/")):
        return f"<{target}>"
    return f"{escape(label)} (<{target}>)"


def _code_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, mrkdwn) of each code span: a run of backticks closed by the next run of the same length."""
    if "`" not in line:
        return []
    runs = [(match.start(), match.end()) for match in _BACKTICKS.finditer(line)]
    following: list[int | None] = [None] * len(runs)
    last_of_length: dict[int, int] = {}
    for index in range(len(runs) - 1, -1, -1):
        length = runs[index][1] - runs[index][0]
        following[index] = last_of_length.get(length)
        last_of_length[length] = index
    spans = []
    index = 0
    while index < len(runs):
        closer = following[index]
        if closer is None:
            index += 1
            continue
        (start, opened), (closed, end) = runs[index], runs[closer]
        content = escape(line[opened:closed])
        spans.append((start, end, f"`{content}`" if opened - start == 1 else f"{FENCE}{content}{FENCE}"))
        index = closer + 1
    return spans


@dataclass(slots=True)
class _Run:
    """A run of emphasis characters in a line, and what it becomes."""

    start: int
    end: int
    kind: str
    opens: bool
    closes: bool
    becomes: str | None = None


_MARKS = {"**": ("*", "*"), "__": ("*", "*"), "~~": ("~", "~"), "*": ("_", "_"), "***": ("*_", "_*")}


def _inline(line: str, emphasis: bool = True) -> str:
    """One line of text: code spans and links first, then emphasis paired around them, everything else escaped."""
    if not _MARKUP.search(line):
        return escape(line)
    atoms: dict[int, str] = {}  # position in plain -> its mrkdwn
    plain_parts: list[str] = []
    length = 0

    def add_text(start: int, end: int) -> None:
        nonlocal length
        position = start
        for match in _LINK.finditer(line, start, end):
            plain_parts.append(line[position : match.start()])
            length += match.start() - position
            bare = match.group("bare")
            atoms[length] = f"<{escape(bare)}>" if bare else _link(match.group("label"), match.group("url"))
            plain_parts.append(_ATOM)
            length += 1
            position = match.end()
        plain_parts.append(line[position:end])
        length += end - position

    position = 0
    for start, end, code in _code_spans(line):
        add_text(position, start)
        atoms[length] = code
        plain_parts.append(_ATOM)
        length += 1
        position = end
    add_text(position, len(line))
    plain = "".join(plain_parts)

    marks = _emphasis(plain, atoms) if emphasis else {}
    out: list[str] = []
    position = 0
    for at in sorted(atoms.keys() | marks.keys()):
        out.append(escape(plain[position:at]))
        if at in atoms:
            out.append(atoms[at])
            position = at + 1
        else:
            run = marks[at]
            out.append(run.becomes or "")
            position = run.end
    out.append(escape(plain[position:]))
    return "".join(out)


def _emphasis(plain: str, atoms: dict[int, str]) -> dict[int, _Run]:
    """Pair emphasis runs: each opener with the nearest later run of its kind that can close it."""
    pending: dict[str, _Run] = {}
    paired: dict[int, _Run] = {}
    for match in _DELIMITERS.finditer(plain):
        start, end = match.span()
        kind = match.group(0)
        if kind not in _MARKS:
            continue
        before = plain[start - 1] if start else " "
        after = plain[end] if end < len(plain) else " "
        before_atom, after_atom = start - 1 in atoms, end in atoms
        opens = not after.isspace() or after_atom
        closes = not before.isspace() or before_atom
        if kind == "*":  # a lone star is italic only between non-word characters (not 2*3*4)
            opens = opens and (before_atom or not (before.isalnum() or before == "_"))
            closes = closes and (after_atom or not (after.isalnum() or after == "_"))
        run = _Run(start, end, kind, opens, closes)
        opener = pending.get(kind)
        if opener is not None and run.closes:
            opener.becomes, run.becomes = _MARKS[kind]
            paired[opener.start] = opener
            paired[run.start] = run
            del pending[kind]
        elif opener is None and run.opens:
            pending[kind] = run
    return paired
