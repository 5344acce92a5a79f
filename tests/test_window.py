"""The in-memory conversation windows always agree with what is on disk."""

from __future__ import annotations

from chatbots.store import Store
from chatbots.types import ConversationKey
from chatbots.window import WindowCache

KEY = ConversationKey("test", "T1", "C1", "t")


def texts(messages: list) -> list[str]:
    return [m.text for m in messages]


def test_cached_window_matches_a_fresh_read_from_disk_as_turns_arrive() -> None:
    store = Store.open(":memory:")
    conversation = store.conversation_id(KEY)
    for n in range(40):
        store.add_message(conversation, "user" if n % 2 == 0 else "assistant", f"turn {n}", 3 + n % 5)
        cached = store.recent_messages(conversation, 60)
        store.windows.clear()
        fresh = store.recent_messages(conversation, 60)
        assert texts(cached) == texts(fresh)
        assert sum(m.tokens for m in cached) <= 60


def test_a_bigger_budget_reaches_back_to_older_turns() -> None:
    store = Store.open(":memory:")
    conversation = store.conversation_id(KEY)
    for n in range(10):
        store.add_message(conversation, "user", f"turn {n}", 10)
    assert texts(store.recent_messages(conversation, 30)) == ["turn 7", "turn 8", "turn 9"]
    assert len(store.recent_messages(conversation, 1000)) == 10


def test_forgetting_a_conversation_empties_its_cached_window() -> None:
    store = Store.open(":memory:")
    conversation = store.conversation_id(KEY)
    store.add_message(conversation, "user", "private", 5)
    assert texts(store.recent_messages(conversation, 100)) == ["private"]
    assert store.forget_conversation(KEY) == 1
    assert store.recent_messages(conversation, 100) == []


def test_least_recently_used_windows_are_evicted_past_the_token_bound() -> None:
    store = Store.open(":memory:")
    store.windows = WindowCache(max_tokens=100)
    ids = [store.conversation_id(ConversationKey("test", "T1", "C1", str(n))) for n in range(3)]
    for conversation in ids:
        store.add_message(conversation, "user", "x", 40)
        store.recent_messages(conversation, 1000)
    assert store.windows._total <= 100
    assert ids[0] not in store.windows._windows and ids[2] in store.windows._windows
    assert texts(store.recent_messages(ids[0], 1000)) == ["x"], "an evicted window reloads from disk"
