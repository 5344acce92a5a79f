"""A reasoning model's thinking, kept apart from its answer: people and later turns see only the answer.

Models stream their thinking inside `<think>...</think>` in the content (DeepSeek-R1, Qwen) or in separate delta
fields (`reasoning_content`, `reasoning`). ThinkFilter splits streamed content as it arrives: a tag may be cut across
chunks, stand anywhere, or never close (then everything after `<think>` is thinking). Each character is looked at a
bounded number of times, so a long answer costs linear time however it is chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "<think>"
CLOSE = "</think>"
REASONING_FIELDS = ("reasoning_content", "reasoning")
"""The delta fields servers put reasoning in (vLLM, DeepSeek and SGLang; OpenRouter and Ollama)."""


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Hidden reasoning from the model stream: never shown nor stored, but counted when the server reports no usage."""

    text: str


def _held(text: str, start: int, tag: str) -> int:
    """How many characters at the end of text[start:] could begin tag (kept back until the next chunk decides)."""
    for size in range(min(len(tag) - 1, len(text) - start), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkFilter:
    """Splits streamed content into what people see and the thinking inside `<think>` blocks."""

    __slots__ = ("_inside", "_held", "_seen_think", "_shown")

    def __init__(self) -> None:
        self._inside = False
        self._held = ""
        """The end of the last chunk that may be the start of a tag."""
        self._seen_think = False
        self._shown = False
        """Whether visible text other than whitespace has come out: the blank lines after a leading block are dropped."""

    def feed(self, text: str) -> tuple[str, str]:
        """(visible, hidden) parts of the next piece of content."""
        if not self._inside and not self._held and "<" not in text:
            return self._visible(text), ""  # the common case: one scan, no copies
        text = self._held + text
        self._held = ""
        visible: list[str] = []
        hidden: list[str] = []
        position = 0
        while True:
            tag = CLOSE if self._inside else OPEN
            found = text.find(tag, position)
            end = len(text) - _held(text, position, tag) if found < 0 else found
            if self._inside:
                hidden.append(text[position:end])
            else:
                visible.append(self._visible(text[position:end]))
            if found < 0:
                self._held = text[end:]
                break
            position = found + len(tag)
            self._inside = not self._inside
            self._seen_think = True
        return "".join(visible), "".join(hidden)

    def end(self) -> tuple[str, str]:
        """(visible, hidden) of what was kept back when the stream ends: an unfinished tag is just text where it is."""
        held, self._held = self._held, ""
        if self._inside:
            return "", held  # an unclosed block: all of it was thinking
        return self._visible(held), ""

    def _visible(self, text: str) -> str:
        if self._shown:
            return text
        if self._seen_think:
            text = text.lstrip()
        self._shown = bool(text) and not text.isspace()
        return text
