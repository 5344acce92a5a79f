"""Where the bot may not answer: learned from its cached permissions or from a 403, and said once.

A channel that refuses the bot is remembered, so it gets one clear warning instead of a 403 per mention. It is
tried again when the guild's channels or roles change (someone fixed the permissions), or after RECHECK_AFTER
seconds in case that change went unseen: the bot does not receive member updates for itself without the
privileged members intent, so a role granted to it may not show in its cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

import discord

from chatbots.failure_log import FailureLog
from chatbots.failures import FailureKind

from .events import guild_id_of, is_thread

log = logging.getLogger(__name__)

RECHECK_AFTER = 900.0
"""Seconds before a refused channel is tried once more without any permission change seen."""

REPLY_NEEDS_HISTORY = 160002
"""Discord's code for 'Cannot reply without permission to read message history'."""

MISSING_PERMISSIONS = 50013
NEEDED = "View Channel, Send Messages (in threads: Send Messages in Threads) and Read Message History"
REFUSALS = {
    50001: "View Channel (Missing Access)",
    MISSING_PERMISSIONS: f"one of {NEEDED} (Missing Permissions): check the channel's permission overrides for the bot",
    50007: "permission to message this user (their DMs are closed to the bot)",
    REPLY_NEEDS_HISTORY: "Read Message History",
}


class How(Enum):
    """How to answer in a channel."""

    REPLY = "reply"
    """As a reply to the person's message."""
    PLAIN = "plain"
    """As a plain message: DMs, and channels where the bot cannot read history (which replies need)."""


class ChannelAccess:
    def __init__(self, clock: Callable[[], float] = time.monotonic, failures: FailureLog | None = None) -> None:
        self._clock = clock
        self.failures = failures or FailureLog()
        self._refused: dict[int, tuple[int | None, float]] = {}  # channel id -> (guild id, when)
        self._no_history: dict[int, int | None] = {}

    def how_to_answer(self, message: Any) -> How | None:
        """REPLY or PLAIN, or None when the bot cannot post in the message's channel (warned about once)."""
        channel = message.channel
        guild_id = guild_id_of(message)
        if self.is_refused(channel.id):
            return None
        if guild_id is None:
            return How.PLAIN
        me = getattr(message.guild, "me", None)
        if me is None or not isinstance(channel, (discord.abc.GuildChannel, discord.Thread)):
            return How.REPLY  # not in the cache (a PartialMessageable knows no permissions): try, and learn
        try:
            permissions = channel.permissions_for(me)
        except discord.ClientException:  # a thread whose parent is not cached
            return How.REPLY
        send = ("send_messages_in_threads", "Send Messages in Threads") if is_thread(channel) else ("send_messages", "Send Messages")
        missing = [label for name, label in (("view_channel", "View Channel"), send) if not getattr(permissions, name)]
        if missing:
            self._refuse(channel.id, guild_id, " and ".join(missing))
            return None
        if not permissions.read_message_history or channel.id in self._no_history:
            self.cannot_read_history(channel.id, guild_id)
            return How.PLAIN
        return How.REPLY

    def is_refused(self, channel_id: int) -> bool:
        found = self._refused.get(channel_id)
        if found is None:
            return False
        if self._clock() - found[1] < RECHECK_AFTER:
            return True
        del self._refused[channel_id]
        return False

    def refused(self, channel: Any, guild_id: int | None, error: discord.Forbidden) -> None:
        """Discord answered 403: remember the channel and say what is missing."""
        what = REFUSALS.get(error.code, f"a permission Discord did not name (error {error.code})")
        if error.code == MISSING_PERMISSIONS:
            missing = _missing(channel)
            what = f"{' and '.join(missing)} (Missing Permissions)" if missing else what
        self._refuse(channel.id, guild_id, what)

    def not_found(self, channel: Any, guild_id: int | None, error: discord.NotFound) -> None:
        """Discord answered 404 to a post: the channel or thread was deleted, or the bot cannot see it. Remembered
        like a refusal, so the rest of the answer is not sent after it."""
        if self.is_refused(channel.id):
            return
        self._refused[channel.id] = (guild_id, self._clock())
        self.failures.report(
            "discord", FailureKind.CHANNEL_NOT_FOUND,
            "discord: cannot answer in channel %s (%s): Discord does not know it (error %s): it was deleted, or the "
            "bot cannot see it (for a private channel or thread, add the bot to it)", channel.id,
            f"guild {guild_id}" if guild_id is not None else "a direct message", error.code, logger=log,
        )

    def cannot_read_history(self, channel_id: int, guild_id: int | None) -> None:
        if channel_id not in self._no_history:
            self._no_history[channel_id] = guild_id
            log.warning(
                "discord: the bot lacks Read Message History in channel %s (guild %s), which replies need; "
                "answers there are posted as plain messages", channel_id, guild_id,
            )

    def forget(self, guild_id: int) -> None:
        """Permissions changed in this guild: try its refused channels again (and warn again if still refused)."""
        for table in (self._refused, self._no_history):
            for channel_id, entry in list(table.items()):
                if (entry[0] if isinstance(entry, tuple) else entry) == guild_id:
                    del table[channel_id]

    def _refuse(self, channel_id: int, guild_id: int | None, what: str) -> None:
        if self.is_refused(channel_id):
            return
        refused_at = self._clock()
        self._refused[channel_id] = (guild_id, refused_at)
        where = f"guild {guild_id}" if guild_id is not None else "a direct message"
        self.failures.report(
            "discord", FailureKind.MISSING_PERMISSION,
            "discord: cannot answer in channel %s (%s): the bot lacks %s. Not trying again in that channel "
            "until its permissions change (or in %.0f minutes)", channel_id, where, what, RECHECK_AFTER / 60, logger=log,
            key=(channel_id, refused_at),  # once per refusal already: warned again whenever it is refused again
        )


def _missing(channel: Any) -> list[str]:
    """The permissions the bot needs in channel that its cached roles lack, by their names in Discord's settings."""
    me = getattr(getattr(channel, "guild", None), "me", None)
    if me is None or not isinstance(channel, (discord.abc.GuildChannel, discord.Thread)):
        return []
    try:
        permissions = channel.permissions_for(me)
    except discord.ClientException:  # a thread whose parent is not cached
        return []
    send = ("send_messages_in_threads", "Send Messages in Threads") if is_thread(channel) else ("send_messages", "Send Messages")
    needed = (("view_channel", "View Channel"), send, ("read_message_history", "Read Message History"))
    return [label for name, label in needed if not getattr(permissions, name)]
