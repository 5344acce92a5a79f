"""Where and for whom the bot answers: channels switched off (or an allow-list of channels), direct messages, and
an allow-list of people (and, on Discord, roles). Decided from the settings before anything costs anything."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .limits import is_direct
from .types import ConversationKey

CHANNEL_OFF_NOTE = "I'm switched off in this channel; an admin can switch me on with `/chatbot channel on`."
DMS_OFF_NOTE = "Direct messages with me are switched off here. Mention me in a channel instead."
USERS_NOTE = "I only answer certain people in this workspace. Ask an admin if you need access."
MAX_ALLOWED = 200
"""People and roles an allow-list may name: enough for a team, small enough to read on every message."""
_ENTRY = re.compile(r"<@!?([A-Za-z0-9]{1,40})(?:\|[^>]{0,100})?>|<@&([0-9]{1,25})>|([UW][A-Z0-9]{1,40}|[0-9]{5,25})")
"""A person as Slack (<@U1>, <@U1|name>, U1) or Discord (<@1>, <@!1>, an id) writes them; a Discord role (<@&1>)."""


@dataclass(frozen=True, slots=True)
class Barred:
    """Why the bot does not answer a message: which rule, and the short note the person may get."""

    rule: str
    """'channel', 'dms' or 'users'."""
    note: str


def channel_answered(key: ConversationKey, settings: dict[str, str]) -> bool:
    """Whether the bot answers in this conversation's channel (direct messages are decided by `dms`)."""
    if is_direct(key):
        return settings.get("dms") != "off"
    state = settings.get("channel_answer")
    return state == "on" if settings.get("channels") == "only" else state != "off"


def parse_allowed(text: str) -> list[str] | None:
    """The people (ids) and roles (&id) in `users only ...`; None when a word is neither."""
    found: list[str] = []
    for word in text.split()[:MAX_ALLOWED + 1]:
        match = _ENTRY.fullmatch(word)
        if match is None:
            return None
        person, role, plain = match.groups()
        found.append(f"&{role}" if role else person or plain)
    return list(dict.fromkeys(found)) if 0 < len(found) <= MAX_ALLOWED else None


def allowed(entries: str, author_id: str, roles: Sequence[str]) -> bool:
    names = set(entries.split())
    return author_id in names or any(f"&{role}" in names for role in roles)


def barred(key: ConversationKey, author_id: str, roles: Sequence[str], settings: dict[str, str]) -> Barred | None:
    """Why this person is not answered here, or None when they are."""
    if not channel_answered(key, settings):
        return Barred("dms", DMS_OFF_NOTE) if is_direct(key) else Barred("channel", CHANNEL_OFF_NOTE)
    people = settings.get("users")
    if people and not allowed(people, author_id, roles):
        return Barred("users", USERS_NOTE)
    return None
