"""The model's Markdown made safe to stream as Slack's markdown_text (chat.startStream / appendStream / stopStream).

Slack documents which Markdown markdown_text renders but not whether its own control sequences (<!channel>,
<!here>, <@U…>, <!subteam^…>) work there too, so they are assumed to. A zero-width space breaks each one where
it could start, and the text still reads the same:
- outside code, after every "<" that does not open a plain autolink (<https://...>): no control sequence, no
  HTML; and after every "]" that could go on into a link's target ("](", "][", "]:"), so a link always shows
  where it goes instead of hiding it behind a label;
- everywhere, code included, after a "<" that could start a mention ("<@", "<!" but "<!--", "<![" and
  "<!DOCTYPE"), after an "&" that could spell one as an entity ("&lt;", "&#60;"), and after the "@" of
  "@here", "@channel" and "@everyone".
Fenced code is told apart line by line (CommonMark's rules), so code keeps its brackets as written.
A character whose next one has not arrived yet counts as dangerous: what was streamed cannot be taken back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BREAK = "\u200b"
_SPECIAL = re.compile(r"[<&\]@\n]")
_AUTOLINK = re.compile(r"<https?://(?:[^\s<>|\\\"`&]|&(?![#lL])){1,2000}>")
_BROADCASTS = ("here", "channel", "everyone")


@dataclass(frozen=True, slots=True)
class GuardState:
    """Where the guard stands between two pieces of one answer."""

    code: bool = False
    """Inside a fenced code block."""
    line_start: int = 0
    """Where the line being streamed starts in the answer."""


def guard(text: str, start: int, end: int, state: GuardState) -> tuple[str, GuardState]:
    """text[start:end] made safe, given everything streamed before start; text beyond end is only looked at.

    Returns the safe Markdown and the state after it; the state changes only by what it is given, so a piece
    that failed to send can be guarded again.
    """
    code, line_start = state.code, state.line_start
    out: list[str] = []
    position = start
    at = start
    while True:
        match = _SPECIAL.search(text, at, end)
        if match is None:
            break
        index = match.start()
        char = text[index]
        at = index + 1
        if char == "\n":
            code = _code_after(text, line_start, index, code)
            line_start = index + 1
            continue
        if char == "<" and not code:
            link = _AUTOLINK.match(text, index)
            if link is not None and link.end() <= end:
                at = link.end()
                continue
        if _breaks(text, index, char, code):
            out.append(text[position : index + 1])
            out.append(BREAK)
            position = index + 1
    out.append(text[position:end])
    return "".join(out), GuardState(code, line_start)


def _breaks(text: str, index: int, char: str, code: bool) -> bool:
    following = text[index + 1 : index + 3]
    if char == "<":
        if not code or not following:
            return True
        if following[0] in "@&\\":
            return True
        return following[0] == "!" and (len(following) < 2 or following[1] not in "-[dD")
    if char == "&":
        return not following or following[0] in "#lL"
    if char == "]":
        return not code and (not following or following[0] in "([:")
    # "@": a broadcast word, or as much of one as has arrived
    word = text[index + 1 : index + 9].lower()
    return any(word.startswith(name) or (len(word) < len(name) and name.startswith(word)) for name in _BROADCASTS)


def _code_after(text: str, start: int, end: int, code: bool) -> bool:
    """Whether a code block is open after the line text[start:end].

    Opening follows CommonMark strictly (up to three spaces, three or more backticks, no backtick after them);
    closing is lenient (any line starting so), so a line Slack may read as prose is never taken for code.
    """
    indent = start
    while indent < end and indent - start < 3 and text[indent] == " ":
        indent += 1
    if not text.startswith("```", indent, end):
        return code
    if code:
        return False
    run = indent
    while run < end and text[run] == "`":
        run += 1
    return text.find("`", run, end) == -1
