"""Slack events to the core's Inbound: which messages the bot answers, keeps as context, or ignores."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

from chatbots.types import Addressed, ConversationKey, Inbound

PLATFORM = "slack"
# A label stops at the next "<" as well as ">": a scan that could run on past the next mention would make the
# search quadratic in the text.
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_ANSWERABLE_SUBTYPES = {None, "file_share", "thread_broadcast", "me_message"}


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """A message worth the core's attention, with what the adapter needs to reply."""

    inbound: Inbound
    user_id: str
    thread_ts: str
    needs_thread: bool
    """True when only an existing bot conversation makes it relevant (unmentioned thread messages)."""
    started_mid_thread: bool
    """True for a mention inside a thread that began before the bot was asked."""


def _clean(text: str, bot_user_id: str) -> str:
    """The message as a person reads it: without the bot's own mention, with Slack's escapes undone."""
    text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>", "", text)
    return html.unescape(text).strip()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def text_fields(*values: Any) -> tuple[str, ...] | None:
    """The values as strings when every one is a non-empty string (Slack payloads can carry anything)."""
    if all(isinstance(value, str) and value for value in values):
        return tuple(values)
    return None


def translate(body: dict[str, Any], bot_user_id: str, *, allow_bots: bool = False) -> SlackMessage | None:
    """What to do with one Events API body: a SlackMessage, or None to ignore it.

    Ignored: the bot's own messages, other bots' (unless allowed), edits and deletions (message_changed /
    message_deleted echo every streamed update), subtypes with no text for the bot, top-level channel chatter,
    and anything malformed.
    """
    event = body.get("event")
    if not isinstance(event, dict):
        return None
    kind, subtype, user = event.get("type"), event.get("subtype"), event.get("user")
    where = text_fields(event.get("channel"), event.get("ts"), body.get("team_id") or event.get("team"))
    if where is None:
        return None
    channel, ts, team = where
    if subtype not in _ANSWERABLE_SUBTYPES and not (allow_bots and subtype == "bot_message"):
        return None
    if event.get("bot_id") and not allow_bots:
        return None
    author = user if isinstance(user, str) and user else event.get("bot_id")
    if not isinstance(author, str) or not author or author == bot_user_id:
        return None
    raw_text = _text(event.get("text"))
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) and event.get("thread_ts") else None
    mentioned = f"<@{bot_user_id}" in raw_text
    others_mentioned = any(found != bot_user_id for found in _USER_MENTION.findall(raw_text))

    if kind == "app_mention":
        addressed = Addressed.YES
        needs_thread = False
    elif kind == "message" and event.get("channel_type") == "im":
        addressed, needs_thread = Addressed.YES, False
    elif kind == "message":
        if mentioned or thread_ts is None:
            return None  # mentions arrive as app_mention; top-level chatter is not for the bot
        addressed = Addressed.CONTEXT if others_mentioned else Addressed.IF_CONTINUING
        needs_thread = True
    else:
        return None

    conversation_ts = thread_ts or ts
    key = ConversationKey(PLATFORM, team, channel, conversation_ts)
    inbound = Inbound(key, ts, author, author, _clean(raw_text, bot_user_id), addressed)
    return SlackMessage(
        inbound,
        user_id=author,
        thread_ts=conversation_ts,
        needs_thread=needs_thread,
        started_mid_thread=kind == "app_mention" and thread_ts is not None and thread_ts != ts,
    )
