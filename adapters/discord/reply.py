"""Show an answer in Discord: typing while the model thinks, then a reply edited about once a second."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import discord

from chatbots.paging import FILLER, Pager

from ..streaming import ThrottledReply
from .access import REPLY_NEEDS_HISTORY, ChannelAccess, How
from .events import guild_id_of

log = logging.getLogger(__name__)

TEXT_LIMIT = 2000
"""Characters per Discord message; longer answers continue in follow-up messages."""
NO_PINGS = discord.AllowedMentions.none()
TYPING_REFRESH = 8.0
"""Seconds between typing triggers: Discord shows one for about 10 s, or until the bot posts."""


class DiscordReply(ThrottledReply):
    """The answer to one message: the first part replies to it, later parts follow as plain messages.

    Mentions in the model's text never ping anyone: every message is sent and edited with allowed_mentions
    none (the client's default too), so @everyone, roles and people in an answer show but notify no one.
    Embeds are suppressed, so Discord never fetches a link the model chose to preview it.
    """

    def __init__(self, source: discord.Message, access: ChannelAccess, how: How = How.REPLY, interval: float = 1.0) -> None:
        super().__init__()
        self.channel: Any = source.channel
        self.guild_id = guild_id_of(source)
        self.access = access
        self.interval = interval
        self._reference = source.to_reference(fail_if_not_exists=False) if how is How.REPLY else None
        self._pager = Pager(TEXT_LIMIT)
        self._paged = 0  # characters of the answer handed to the pager
        self._posted: list[discord.Message] = []
        self._shown: list[str] = []
        self._settled = 0  # leading messages posted with their final text
        self._ids: list[str] = []
        self._typing: asyncio.Task[None] | None = None
        self._stop_typing = asyncio.Event()

    def message_ids(self) -> list[str]:
        return list(self._ids)

    async def close(self) -> None:
        """Stop the typing indicator; safe to call more than once."""
        if self._typing is None:
            return
        self._stop_typing.set()
        with contextlib.suppress(Exception):
            await self._typing  # a trigger in flight completes, so it cannot land after the answer

    async def _thinking(self) -> None:
        if self._typing is None and not self.access.is_refused(self.channel.id):
            self._typing = asyncio.create_task(self._keep_typing())

    async def _keep_typing(self) -> None:
        """Trigger typing now and every TYPING_REFRESH seconds until the first text shows."""
        while not self._stop_typing.is_set():
            try:
                await self.channel.typing()
            except discord.Forbidden as error:
                self.access.refused(self.channel, self.guild_id, error)
                return
            except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
                log.info("typing indicator failed: %s", type(error).__name__)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_typing.wait(), TYPING_REFRESH)

    async def _render(self, text: str, final: bool) -> None:
        """Bring the messages up to text. An interim render makes one call at most (the earliest change) and
        leaves the rest to the next one: when an answer spills into a new message, the last edit of the full
        one and the post of the new one land a second apart instead of doubling up, and the final render then
        often has one call fewer to make.
        """
        await self.close()
        self._pager.settle(text[self._paged :])
        self._paged = len(text)
        parts = self._pager.parts(at_least=len(self._posted)) or ([FILLER] if final else [])
        for index in range(self._settled, len(parts)):
            part = parts[index]
            if self.access.is_refused(self.channel.id):
                return  # said once in the log; the channel refuses the bot, so stop here
            if index < len(self._posted):
                if part == self._shown[index]:
                    continue
                await self._edit(index, part, final)
            else:
                await self._post(part)
            if not final and index + 1 < len(parts):
                self._render_again()
                return
        while self._settled < min(self._pager.finished, len(self._shown)) and self._shown[self._settled] == parts[self._settled]:
            self._settled += 1

    async def _post(self, part: str) -> None:
        reference = self._reference if not self._posted else None
        try:
            sent = await self.channel.send(
                part, reference=reference, mention_author=False, allowed_mentions=NO_PINGS, suppress_embeds=True
            )
        except discord.Forbidden as error:
            if error.code == REPLY_NEEDS_HISTORY and reference is not None:
                self.access.cannot_read_history(self.channel.id, self.guild_id)
                self._reference = None
                return await self._post(part)
            self.access.refused(self.channel, self.guild_id, error)
            return
        except discord.NotFound as error:
            self.access.not_found(self.channel, self.guild_id, error)
            return
        self._posted.append(sent)
        self._shown.append(part)
        self._ids.append(str(sent.id))

    async def _edit(self, index: int, part: str, final: bool) -> None:
        try:
            self._posted[index] = await self._posted[index].edit(content=part, allowed_mentions=NO_PINGS, suppress=True)
            self._shown[index] = part
        except discord.Forbidden as error:
            self.access.refused(self.channel, self.guild_id, error)
        except discord.HTTPException:
            if not final:
                raise  # the final render retries with the whole text
            # The last word must land: post the final text as a new message rather than lose it.
            sent = await self.channel.send(part, allowed_mentions=NO_PINGS, suppress_embeds=True)
            self._posted[index], self._shown[index] = sent, part
            self._ids.append(str(sent.id))
