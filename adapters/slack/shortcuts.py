"""Message shortcuts: "Summarize thread" and "Ask about this message", read from Slack's message_action payload."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from chatbots.summaries import ThreadLine

SUMMARIZE = "summarize_thread"
ASK_ABOUT = "ask_about_message"
PAGE_SIZE = 200
MAX_PAGES = 10
"""conversations.replies pages read for one summary: up to 2,000 messages, so a huge thread costs a bounded time."""


@dataclass(frozen=True, slots=True)
class Shortcut:
    """A message shortcut as Slack sent it: who used it, on which message, in which thread."""

    callback_id: str
    team: str
    user: str
    channel: str
    message_ts: str
    thread_ts: str
    """The message's thread (its own ts when it starts none)."""
    message_user: str | None
    message_text: str
    trigger: str
    """Unique per use: the stored question's id, so a redelivered payload is answered once."""


def read_shortcut(body: dict[str, Any]) -> Shortcut | None:
    """A message_action payload as a Shortcut; None when malformed."""
    message = body.get("message") if isinstance(body.get("message"), dict) else {}
    assert isinstance(message, dict)
    team = _inner(body, "team", "id") or _inner(body, "user", "team_id")
    user, channel = _inner(body, "user", "id"), _inner(body, "channel", "id")
    ts = message.get("ts") or body.get("message_ts")
    callback, trigger = body.get("callback_id"), body.get("trigger_id") or body.get("action_ts") or ts
    if not all(isinstance(v, str) and v for v in (team, user, channel, ts, callback, trigger)):
        return None
    thread = message.get("thread_ts")
    author = message.get("user") or message.get("bot_id")
    text = message.get("text")
    return Shortcut(str(callback), str(team), str(user), str(channel), str(ts),
                    thread if isinstance(thread, str) and thread else str(ts), author if isinstance(author, str) else None,
                    html.unescape(text) if isinstance(text, str) else "", str(trigger))


async def read_thread(client: AsyncWebClient, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    """Every message of a thread, oldest first, through conversations.replies pages (bounded by MAX_PAGES)."""
    messages: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        response = await client.conversations_replies(channel=channel, ts=thread_ts, limit=PAGE_SIZE, cursor=cursor)
        messages += [m for m in response.get("messages") or [] if isinstance(m, dict)]
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not response.get("has_more") or not cursor:
            break
    return messages


def is_readable(message: dict[str, Any]) -> bool:
    """A person's message with text (the bot's own answers are summarised too: they are part of the thread)."""
    return isinstance(message.get("text"), str) and bool(message["text"].strip()) and message.get("subtype") in (
        None, "thread_broadcast", "file_share", "bot_message")


def line(message: dict[str, Any], name: str) -> ThreadLine:
    return ThreadLine(name, html.unescape(message.get("text") or ""))


def _inner(body: dict[str, Any], outer: str, inner: str) -> Any:
    value = body.get(outer)
    return value.get(inner) if isinstance(value, dict) else None
