"""CHATBOTS_RETENTION_DAYS: stored messages older than the cutoff are deleted; daily usage totals stay."""

from __future__ import annotations

from datetime import timedelta

from .clock import iso
from .store import SQLiteDatabase, Store

EVENT_MEMORY = timedelta(days=2)
"""How long platform event ids are kept for de-duplication: Slack and Discord redeliver within minutes."""


def message_cutoff(store: Store | SQLiteDatabase, days: int) -> str:
    return iso(store.clock() - timedelta(days=days))


def event_cutoff(store: Store | SQLiteDatabase) -> str:
    return iso(store.clock() - EVENT_MEMORY)


def purge_old(sql: SQLiteDatabase, days: int) -> int:
    """`chatbots purge`: delete message text older than `days` and old de-duplication records, now."""
    while sql.purge_events(event_cutoff(sql)):
        pass
    return sql.purge(message_cutoff(sql, days))


async def upkeep(store: Store, retention_days: int | None) -> int:
    """The bot's hourly upkeep, in short batches: old event ids always go; old messages when retention is set."""
    await store.purge_events(event_cutoff(store))
    if not retention_days:
        return 0
    return await store.purge(message_cutoff(store, retention_days))
