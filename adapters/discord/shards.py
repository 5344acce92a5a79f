"""Discord shards: which ones this process runs, and identifying them as fast as Discord allows.

A guild's events arrive on shard ``(guild_id >> 22) % shard_count`` and DMs on shard 0, so processes that run
disjoint shard ids (DISCORD_SHARDS) of one DISCORD_SHARD_COUNT never see the same message twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import discord

log = logging.getLogger(__name__)

IDENTIFY_WINDOW = 5.0
"""Seconds: Discord accepts `max_concurrency` IDENTIFYs per window, one per bucket (shard id % max_concurrency)."""


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard a guild's events arrive on (Discord's rule)."""
    return (guild_id >> 22) % shard_count


class IdentifyPacer:
    """Spaces IDENTIFYs of one rate-limit bucket a window apart; other buckets go at once.

    discord.py's default waits 5 s before every shard but the first, whatever `max_concurrency` allows. Shards in
    other processes are not counted: Discord answers an IDENTIFY over the limit with an invalid session, and
    discord.py identifies again.
    """

    def __init__(self, window: float = IDENTIFY_WINDOW) -> None:
        self.window = window
        self.concurrency: int | None = None
        """`session_start_limit.max_concurrency` from GET /gateway/bot, fetched at the first wait that needs it."""
        self._last: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    @property
    def started(self) -> bool:
        """Whether any IDENTIFY went out yet (the first never waits, so it needs no limit)."""
        return bool(self._last)

    async def wait(self, shard_id: int, concurrency: int) -> None:
        bucket = shard_id % max(concurrency, 1)
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            last = self._last.get(bucket)
            if last is not None:
                delay = last + self.window - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # Discord's identify rate limit, not synchronisation
            self._last[bucket] = time.monotonic()


class ShardedClient(discord.AutoShardedClient):
    """discord.py's sharded client, identifying each shard as soon as Discord's limits allow."""

    def __init__(self, *, pacer: IdentifyPacer | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.pacer = pacer or IdentifyPacer()

    @property
    def running_shards(self) -> Sequence[int]:
        """The shard ids this process runs; known once connect() has asked Discord for the count."""
        if self.shard_ids is not None:
            return self.shard_ids
        return range(self.shard_count) if self.shard_count else ()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self.pacer.concurrency is None and self.pacer.started:
            self.pacer.concurrency = await self._max_concurrency()
        await self.pacer.wait(shard_id or 0, self.pacer.concurrency or 1)

    async def _max_concurrency(self) -> int:
        try:
            _, _, limits = await self.http.get_bot_gateway()
            return max(int(limits["max_concurrency"]), 1)
        except (discord.DiscordException, aiohttp.ClientError, KeyError, TypeError, ValueError) as error:
            log.warning("could not read Discord's identify concurrency (%s); identifying one shard per %.0f s",
                        type(error).__name__, self.pacer.window)
            return 1
