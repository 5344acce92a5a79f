"""The store's schema, de-duplication and the cost of the hot-path query."""

from __future__ import annotations

from pathlib import Path

import pytest

from collections.abc import Callable

from chatbots.migrations import migrations
from chatbots.store import WINDOW_SQL, Store, StoreError
from chatbots.types import ConversationKey


@pytest.mark.sqlite_only  # the PostgreSQL schema: test_store_contract.py, test_replica_processes.py
def test_migrations_run_once_and_enable_wal(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    Store.open(path).close()
    store = Store.open(path)  # second open applies nothing new
    assert [m.name for m in migrations.applied(store.db)] == [
        "m001_initial", "m002_usage_and_feedback", "m003_moderation_log", "m004_token_bounds", "m005_answer_leases",
        "m006_jobs", "m007_shared_limits", "m008_window_versions", "m009_message_files", "m010_slack_installations",
        "m011_governance",
    ]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"workspaces", "settings", "conversations", "messages", "events", "audit"} <= set(store.db.table_names())


async def test_platform_event_ids_are_remembered_across_restarts(opened: Callable[[], Store]) -> None:
    store = opened()
    assert await store.first_delivery("slack", "Ev1")
    assert not await store.first_delivery("slack", "Ev1")
    assert await store.first_delivery("discord", "Ev1"), "platforms have separate id spaces"
    store.close()
    assert not await opened().first_delivery("slack", "Ev1")


async def test_same_channel_names_in_two_workspaces_are_different_conversations(store: Store) -> None:
    a = await store.conversation_id(ConversationKey("slack", "T1", "C1", "1.0"))
    b = await store.conversation_id(ConversationKey("slack", "T2", "C1", "1.0"))
    c = await store.conversation_id(ConversationKey("discord", "T1", "C1", "1.0"))
    assert len({a, b, c}) == 3


async def _window_cost(store: Store, conversation: int) -> int:
    """SQLite virtual-machine steps to load one conversation's recent window."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.windows.clear()  # measure the read from disk, not the in-memory copy
    store.db.conn.set_progress_handler(tick, 1)
    await store.recent_messages(conversation, 100_000)
    store.db.conn.set_progress_handler(None, 1)
    return steps


@pytest.mark.sqlite_only  # counts SQLite's virtual-machine steps; PostgreSQL's cost is in bench/
async def test_loading_the_window_costs_the_same_however_big_the_database_grows() -> None:
    store = Store.open(":memory:")
    mine = await store.conversation_id(ConversationKey("slack", "T1", "C1", "mine"))
    for n in range(50):
        await store.add_message(mine, "user", f"message {n}", 5)
    small = await _window_cost(store, mine)
    assert small > 50

    others = [await store.conversation_id(ConversationKey("slack", "T1", "C9", str(n))) for n in range(100)]
    rows = [(others[n % 100], "user", "filler", 3, "2026-01-01T00:00:00.000000Z") for n in range(200_000)]
    store.db.conn.executemany(
        "INSERT INTO messages (conversation_id, role, text, tokens, created_at) VALUES (?, ?, ?, ?, ?)", rows
    )
    store.db.conn.commit()
    large = await _window_cost(store, mine)
    assert large <= small * 1.1, f"window load grew from {small} to {large} VM steps with 200k other messages"


@pytest.mark.sqlite_only  # SQLite's query plan
def test_window_query_reads_through_the_conversation_index() -> None:
    store = Store.open(":memory:")
    plan = [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + WINDOW_SQL, [1, 5, 100])]
    assert any("USING INDEX messages_by_conversation" in step for step in plan), plan
    assert not any(step.startswith("SCAN messages") for step in plan), plan


@pytest.mark.sqlite_only  # CHATBOTS_DB
def test_an_unusable_database_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="CHATBOTS_DB"):
        Store.open(tmp_path / "no-such-folder" / "bot.db")
