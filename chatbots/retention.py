"""CHATBOTS_RETENTION_DAYS: stored messages older than the cutoff are deleted; daily usage totals stay."""

from __future__ import annotations

from datetime import timedelta

from .clock import iso
from .store import Store

EVENT_MEMORY = timedelta(days=2)
"""How long platform event ids are kept for de-duplication: Slack and Discord redeliver within minutes."""


def purge_old(store: Store, days: int) -> int:
    """Delete message text older than `days` (and old de-duplication records); returns messages removed."""
    now = store.clock()
    store.purge_events(iso(now - EVENT_MEMORY))
    return store.purge(iso(now - timedelta(days=days)))
