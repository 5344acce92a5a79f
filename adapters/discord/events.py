"""Discord messages to the core's Inbound: which ones the bot answers, and which conversation they belong to.

Pure functions over a discord.Message (attributes only, no REST calls), so the rules can be tested with plain
stand-ins as well as through the real client.
"""

from __future__ import annotations

import re
from typing import Any

import discord

from chatbots.types import Addressed, ConversationKey, Inbound

PLATFORM = "discord"
DM_WORKSPACE = "dm"
"""Direct messages belong to no guild: they share this workspace, and each DM channel is its own conversation."""

ANSWERABLE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
"""Joins, pins, boosts, thread notices and the like are system messages: never questions."""
THREAD_TYPES = frozenset({
    discord.ChannelType.public_thread, discord.ChannelType.private_thread, discord.ChannelType.news_thread,
})

_USER_TOKEN = re.compile(r"<@!?(\d+)>")
_ROLE_TOKEN = re.compile(r"<@&(\d+)>")
_CHANNEL_TOKEN = re.compile(r"<#(\d+)>")
_EMOJI_TOKEN = re.compile(r"<a?:(\w+):\d+>")


def guild_id_of(message: Any) -> int | None:
    """The guild a message was sent in, even when that guild is not (yet) in the client's cache."""
    guild = getattr(message, "guild", None)
    if guild is not None:
        return int(guild.id)
    found = getattr(message.channel, "guild_id", None)
    return int(found) if found is not None else None


def is_thread(channel: Any) -> bool:
    return getattr(channel, "type", None) in THREAD_TYPES


def conversation_key(message: Any) -> ConversationKey:
    """Guild channel: the channel. Thread: the thread, under its parent channel. DM: the DM channel."""
    channel = message.channel
    guild_id = guild_id_of(message)
    if guild_id is None:
        return ConversationKey(PLATFORM, DM_WORKSPACE, str(channel.id), str(channel.id))
    parent = getattr(channel, "parent_id", None) if is_thread(channel) else None
    if parent is not None:
        return ConversationKey(PLATFORM, str(guild_id), str(parent), str(channel.id))
    return ConversationKey(PLATFORM, str(guild_id), str(channel.id), str(channel.id))


def replies_to_bot(message: Any, bot_id: int) -> bool:
    """A reply (not a forward) to one of the bot's messages, whether or not it pings the bot."""
    reference = getattr(message, "reference", None)
    if reference is None or getattr(reference, "type", discord.MessageReferenceType.reply) is not discord.MessageReferenceType.reply:
        return False
    replied = getattr(reference, "resolved", None) or getattr(reference, "cached_message", None)
    author = getattr(replied, "author", None)  # a DeletedReferencedMessage has none
    return author is not None and author.id == bot_id


def is_addressed(message: Any, bot_id: int, bot_role_id: int | None = None) -> bool:
    """Every DM; in guilds a mention of the bot (or of its own managed role) or a reply to the bot."""
    if guild_id_of(message) is None:
        return True
    if any(user.id == bot_id for user in message.mentions):
        return True
    if bot_role_id is not None and bot_role_id in getattr(message, "raw_role_mentions", ()):
        return True
    return replies_to_bot(message, bot_id)


def readable_text(message: Any, bot_id: int, bot_role_id: int | None = None) -> str:
    """The text as a person reads it: the bot's own mention removed, other mentions and emoji shown by name."""
    names = {str(user.id): user.display_name for user in message.mentions}
    roles = {str(role.id): role.name for role in getattr(message, "role_mentions", ())}
    channels = {str(channel.id): getattr(channel, "name", "") for channel in getattr(message, "channel_mentions", ())}

    def user(match: re.Match[str]) -> str:
        if match.group(1) == str(bot_id):
            return ""
        return f"@{names[match.group(1)]}" if match.group(1) in names else match.group(0)

    def role(match: re.Match[str]) -> str:
        if bot_role_id is not None and match.group(1) == str(bot_role_id):
            return ""
        return f"@{roles[match.group(1)]}" if match.group(1) in roles else match.group(0)

    def channel(match: re.Match[str]) -> str:
        return f"#{channels[match.group(1)]}" if channels.get(match.group(1)) else match.group(0)

    text = _USER_TOKEN.sub(user, message.content)
    text = _ROLE_TOKEN.sub(role, text)
    text = _CHANNEL_TOKEN.sub(channel, text)
    return _EMOJI_TOKEN.sub(r":\1:", text).strip()


def is_own(message: Any, bot_id: int) -> bool:
    return message.author.id == bot_id


def translate(message: Any, bot_id: int, *, allow_bots: bool = False, bot_role_id: int | None = None) -> Inbound | None:
    """The Inbound for a message the bot should answer, or None to ignore it.

    Ignored: the bot's own messages, other bots' and webhooks' (unless allowed), system messages, messages with
    neither text nor attachments (content withheld without the message content intent), and guild messages
    that neither mention nor reply to the bot. Ignored messages are not stored either. A message with only
    attachments is a question about them: its text is empty, and the service adds the files.
    """
    author = message.author
    if author.id == bot_id or getattr(author, "system", False):
        return None
    if (author.bot or getattr(message, "webhook_id", None) is not None) and not allow_bots:
        return None
    if message.type not in ANSWERABLE_TYPES or not (message.content or getattr(message, "attachments", None)):
        return None
    if not is_addressed(message, bot_id, bot_role_id):
        return None
    return Inbound(
        conversation_key(message),
        str(message.id),
        str(author.id),
        author.display_name,
        readable_text(message, bot_id, bot_role_id),
        addressed=Addressed.YES,
        author_roles=tuple(str(role.id) for role in getattr(author, "roles", ())),
    )
