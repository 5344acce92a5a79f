"""Files into the room the model's window leaves a message: sized as the provider counts them, cut or left out
with a note when they do not fit."""

from __future__ import annotations

from ..prompt import image_heading
from ..tokens import MESSAGE_OVERHEAD, TokenCounter, byte_bound
from ..window import StoredFile
from .files import FilePart, Kind
from .images import image_tokens

CUT_MARK = "\n[The rest of this file was cut: it is longer than the model can read.]"
MIN_CUT = 64
"""Tokens below which a cut file is left out instead: a few words of it would mislead more than help."""
CUT_MARGIN = 8


def text_tokens(counter: TokenCounter, text: str) -> int:
    """Tokens of a piece of a message (exact once the tokenizer is loaded, an upper bound until then)."""
    return counter.size(text).tokens - MESSAGE_OVERHEAD + 2  # +2: the blank line between pieces


def part_tokens(counter: TokenCounter, model: str, part: FilePart) -> int:
    if part.kind is Kind.IMAGE:
        return image_tokens(model, part.width, part.height) + byte_bound(image_heading(part.name))
    return text_tokens(counter, part.content)


async def fit_files(
    parts: list[FilePart], room: int, counter: TokenCounter, model: str
) -> tuple[list[StoredFile], list[str]]:
    """The files as stored and sent (with their sizes), in order, within room tokens; and notes for what was cut.

    Sizes are upper bounds until one would leave something out: then the tokenizer loads and counts for real."""
    kept: list[StoredFile] = []
    notes: list[str] = []
    for part in parts:
        tokens = part_tokens(counter, model, part)
        content = part.content
        if tokens > room and part.kind is not Kind.IMAGE and not counter.exact:
            await counter.load()
            tokens = part_tokens(counter, model, part)
        if tokens > room:
            if part.kind is Kind.TEXT and room - CUT_MARGIN - text_tokens(counter, CUT_MARK) >= MIN_CUT:
                content = counter.truncate(part.content, room - CUT_MARGIN - text_tokens(counter, CUT_MARK)) + CUT_MARK
                tokens = text_tokens(counter, content)
                notes.append(f"I only read the first part of {part.name}: all of it does not fit in what this model "
                             "can read at once.")
            elif part.kind is Kind.NOTE:
                continue
            else:
                notes.append(f"I couldn't read {part.name}: it does not fit in what this model can read at once.")
                content = f"[File: {part.name} was shared but not read: too big for this model]"
                part = FilePart(Kind.NOTE, part.name, part.mimetype, content)
                tokens = text_tokens(counter, content)
                if tokens > room:
                    continue
        kept.append(StoredFile(str(part.kind), part.name, part.mimetype, content, tokens))
        room -= tokens
    return kept, notes
