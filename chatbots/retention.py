"""CHATBOTS_RETENTION_DAYS: stored messages older than the cutoff are deleted; daily usage totals stay."""

from __future__ import annotations

from datetime import timedelta

from .clock import iso
from .store import SQLDatabase, Store

EVENT_MEMORY = timedelta(days=2)
"""How long platform event ids are kept for de-duplication: Slack and Discord redeliver within minutes."""
NOTICE_MEMORY = timedelta(days=62)
"""How long the marks of notices sent (alerts per day or month, notes per day) are kept: past any such period."""
PURGE_EVERY = 3600.0
"""Seconds between purges; one process claims each, however many share the database."""


def message_cutoff(store: Store | SQLDatabase, days: int) -> str:
    return iso(store.clock() - timedelta(days=days))


def event_cutoff(store: Store | SQLDatabase) -> str:
    return iso(store.clock() - EVENT_MEMORY)


def purge_old(sql: SQLDatabase, days: int) -> int:
    """`chatbots purge`: delete message text older than `days` and old de-duplication records, now."""
    while sql.purge_events(event_cutoff(sql)):
        pass
    return sql.purge(message_cutoff(sql, days))


async def upkeep(store: Store, retention_days: int | None, answer_lease: float | None = None) -> int:
    """The bot's periodic upkeep; returns how many messages the purge deleted.

    With replicas (answer_lease set), streaming answers not saved for answer_lease seconds were cut off with their
    process: they become interrupted. Hourly, claimed by one process: old event ids go, in short batches, and old
    messages when retention is set.
    """
    if answer_lease is not None:
        await store.recover_interrupted(idle_since=iso(store.clock() - timedelta(seconds=answer_lease)))
    if not await store.claim_job("purge", PURGE_EVERY - 1):
        return 0
    await store.purge_events(event_cutoff(store))
    await store.purge_notices(iso(store.clock() - NOTICE_MEMORY))
    if not retention_days:
        return 0
    return await store.purge(message_cutoff(store, retention_days))
