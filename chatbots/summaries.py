"""Summarising a thread: the question the model is asked, built from messages the platform read (any platform)."""

from __future__ import annotations

from dataclasses import dataclass

from .prompt import speaker_label

MAX_THREAD_CHARS = 40_000
"""Characters of a thread put in one summary question; the oldest messages beyond it are left out (and said so).
The engine fits the question to the model's window as for any other message."""
MAX_LINE_CHARS = 4_000
ASK_ABOUT_QUESTION = "What is this message about? Explain it briefly, and tell me what I might want to ask or do next."


@dataclass(frozen=True, slots=True)
class ThreadLine:
    """One message of a thread, as read from the platform."""

    author: str
    text: str


def summary_question(lines: list[ThreadLine]) -> str:
    """The question that asks for a summary of these messages (oldest first), bounded in size."""
    rendered: list[str] = []
    used = 0
    for line in reversed(lines):  # keep the newest when the thread is too long
        text = " ".join(line.text.split())[:MAX_LINE_CHARS]
        if not text:
            continue
        entry = f"{speaker_label(line.author, None)}: {text}"
        if used + len(entry) > MAX_THREAD_CHARS:
            break
        rendered.append(entry)
        used += len(entry) + 1
    left_out = sum(1 for line in lines if line.text.strip()) - len(rendered)
    head = "Summarize this thread: the main points, decisions and open questions, briefly."
    if left_out > 0:
        head += f" ({left_out} older messages were left out to fit.)"
    return "\n".join([head, "", *reversed(rendered)]) if rendered else ""


def context_of(line: ThreadLine) -> str:
    """A message someone asks about, as the context stored before the question."""
    return line.text[:MAX_THREAD_CHARS]
