"""Suggested prompts: the starters an assistant panel offers, per workspace, with a default set."""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_PROMPTS = 4
"""Slack's assistant panel shows at most four."""
MAX_TITLE = 75
MAX_MESSAGE = 1_000
SETTING = "prompts"
"""The workspace setting that holds them, as JSON; absent means the defaults."""


@dataclass(frozen=True, slots=True)
class Prompt:
    title: str
    message: str


DEFAULT_PROMPTS = (
    Prompt("What can you do?", "What can you help me with, and how do I use you?"),
    Prompt("Summarize this channel", "Summarize the recent discussion in this channel."),
    Prompt("Draft a message", "Help me draft a clear, friendly message."),
)


class PromptsError(ValueError):
    """Bad `prompts set` text: the message says what to fix."""


def parse_prompts(text: str) -> tuple[Prompt, ...]:
    """`TITLE = MESSAGE | TITLE = MESSAGE ...` as prompts; raises PromptsError with a clear reason."""
    pieces = [piece.strip() for piece in text.split("|")]
    if not text.strip() or not all(pieces):
        raise PromptsError("Give each prompt as `TITLE = MESSAGE`, separated by `|`.")
    if len(pieces) > MAX_PROMPTS:
        raise PromptsError(f"That is {len(pieces)} prompts; Slack shows at most {MAX_PROMPTS}.")
    prompts = []
    for piece in pieces:
        title, equals, message = piece.partition("=")
        title, message = title.strip(), message.strip()
        if not equals or not title or not message:
            raise PromptsError(f"`{piece[:60]}` needs a title and a message: `TITLE = MESSAGE`.")
        if len(title) > MAX_TITLE:
            raise PromptsError(f"The title `{title[:40]}…` is {len(title)} characters; the limit is {MAX_TITLE}.")
        if len(message) > MAX_MESSAGE:
            raise PromptsError(f"The message for `{title}` is {len(message):,} characters; the limit is {MAX_MESSAGE:,}.")
        prompts.append(Prompt(title, message))
    return tuple(prompts)


def to_setting(prompts: tuple[Prompt, ...]) -> str:
    return json.dumps([{"title": p.title, "message": p.message} for p in prompts], ensure_ascii=False)


def from_settings(settings: dict[str, str]) -> tuple[Prompt, ...]:
    """The workspace's prompts, or the defaults (also when the stored value is unreadable)."""
    raw = settings.get(SETTING)
    if not raw:
        return DEFAULT_PROMPTS
    try:
        found = json.loads(raw)
        prompts = tuple(Prompt(str(item["title"]), str(item["message"])) for item in found)
    except (ValueError, TypeError, KeyError):
        return DEFAULT_PROMPTS
    return prompts[:MAX_PROMPTS] or DEFAULT_PROMPTS


def describe(prompts: tuple[Prompt, ...]) -> str:
    return "\n".join(f"• *{p.title}* = {p.message}" for p in prompts)
