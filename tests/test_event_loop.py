"""Database work never stalls the event loop: a locked file delays only the turns that need it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.retention import upkeep
from chatbots.store import Store
from chatbots.store.base import PURGE_BATCH
from chatbots.types import ConversationKey, Inbound
from tests.backend import open_store, rows, value
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply

KEY = ConversationKey("t", "T1", "C1", "1")


async def loop_lag() -> float:
    """How late a 10 ms timer fires: near zero while the loop is free, seconds while a call blocks it."""
    started = time.monotonic()
    await asyncio.sleep(0.01)
    return time.monotonic() - started - 0.01


@pytest.mark.sqlite_only  # a SQLite write lock held by another process
async def test_a_turn_waiting_on_a_locked_database_leaves_the_loop_free(
    settings: Config, model_server: FakeModelServer
) -> None:
    engine = Engine(Store.open(settings.db_path, busy_timeout=3.0), OpenAIChat.from_settings(settings), settings)
    operator = sqlite3.connect(settings.db_path)
    operator.execute("BEGIN IMMEDIATE")  # an operator command holding the write lock
    reply = RecordingReply()
    turn = asyncio.create_task(engine.handle(Inbound(KEY, "m1", "U1", "Ada", "hello?"), reply))
    lags = [await loop_lag() for _ in range(5)]
    assert max(lags) < 0.5, f"the loop stalled {max(lags):.2f} s behind a locked database"
    assert not turn.done(), "the turn waits for the lock"
    operator.commit()
    operator.close()
    assert (await turn).status == "answered" and reply.text == "echo: hello?"
    await engine.close()


async def test_the_retention_purge_deletes_in_short_batches(settings: Config) -> None:
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    store = open_store(settings, clock=lambda: now[0])
    conversation = await store.conversation_id(KEY)
    old = [(conversation, "user", "old", 1, "2025-01-01T00:00:00.000000Z") for _ in range(PURGE_BATCH * 2 + 10)]
    store.sql._run_many("INSERT INTO messages (conversation_id, role, text, tokens, created_at) VALUES (?, ?, ?, ?, ?)", old)
    cutoff = "2025-06-01T00:00:00.000000Z"
    assert await store.run(store.sql.purge_batch, cutoff) == PURGE_BATCH, "one statement deletes one bounded batch"
    assert await upkeep(store, retention_days=30) == len(old) - PURGE_BATCH, "the rest goes batch by batch"
    assert value(store, "SELECT count(*) FROM messages") == 0
    store.close()


async def test_old_event_ids_are_forgotten_even_without_a_retention_period(settings: Config) -> None:
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    store = open_store(settings, clock=lambda: now[0])
    assert await store.first_delivery("slack", "Ev-old")
    now[0] += timedelta(days=3)
    assert await store.first_delivery("slack", "Ev-new")
    await upkeep(store, retention_days=None)
    assert [row[0] for row in rows(store, "SELECT event_id FROM events")] == ["Ev-new"]
    store.close()
