"""The in-memory conversation windows always agree with what is on disk."""

from __future__ import annotations

from collections.abc import Callable

from chatbots.store import Store
from chatbots.types import ConversationKey
from chatbots.window import WindowCache
from tests.backend import rows

KEY = ConversationKey("test", "T1", "C1", "t")


def texts(messages: list) -> list[str]:
    return [m.text for m in messages]


async def test_cached_window_matches_a_fresh_read_from_disk_as_turns_arrive(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    for n in range(40):
        await store.add_message(conversation, "user" if n % 2 == 0 else "assistant", f"turn {n}", 3 + n % 5)
        cached = await store.recent_messages(conversation, 60)
        store.windows.clear()
        fresh = await store.recent_messages(conversation, 60)
        assert texts(cached) == texts(fresh)
        assert sum(m.tokens for m in cached) <= 60


async def test_a_bigger_budget_reaches_back_to_older_turns(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    for n in range(10):
        await store.add_message(conversation, "user", f"turn {n}", 10)
    assert texts(await store.recent_messages(conversation, 30)) == ["turn 7", "turn 8", "turn 9"]
    assert len(await store.recent_messages(conversation, 1000)) == 10


async def test_forgetting_a_conversation_empties_its_cached_window(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    await store.add_message(conversation, "user", "private", 5)
    assert texts(await store.recent_messages(conversation, 100)) == ["private"]
    assert await store.forget_conversation(KEY) == 1
    assert await store.recent_messages(conversation, 100) == []


async def test_least_recently_used_windows_are_evicted_past_the_token_bound(store: Store) -> None:
    store.windows = WindowCache(max_tokens=100)
    ids = [await store.conversation_id(ConversationKey("test", "T1", "C1", str(n))) for n in range(3)]
    for conversation in ids:
        await store.add_message(conversation, "user", "x", 40)
        await store.recent_messages(conversation, 1000)
    assert store.windows._total <= 100
    assert ids[0] not in store.windows._windows and ids[2] in store.windows._windows
    assert texts(await store.recent_messages(ids[0], 1000)) == ["x"], "an evicted window reloads from disk"


async def test_a_window_cut_by_upper_bounds_is_rough_until_made_exact(opened: Callable[[], Store]) -> None:
    store = opened()
    conversation = await store.conversation_id(KEY)
    for n in range(20):
        await store.add_message(conversation, "user", f"turn {n}", 40, exact=False)  # bounded at 40; really 10
    window = await store.window(conversation, 100)
    assert texts(window.messages) == ["turn 18", "turn 19"] and window.rough

    counted: list[str] = []
    corrected = await store.make_exact(conversation, 100, lambda message: counted.append(message.text) or 10)
    assert corrected == 11 and counted[0] == "turn 19", "newest first, up to the first message past the budget"
    window = await store.window(conversation, 100)
    assert texts(window.messages) == [f"turn {n}" for n in range(10, 20)] and not window.rough

    reopened = opened()  # the corrected sizes were kept: a cold read agrees and needs no recount
    cold = await reopened.window(conversation, 100)
    assert texts(cold.messages) == texts(window.messages) and not cold.rough
    assert all(message.exact for message in cold.messages)


async def test_bounds_that_fit_whole_or_cut_at_exact_sizes_are_not_rough(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    await store.add_message(conversation, "user", "old", 50)  # exact
    await store.add_message(conversation, "user", "new", 40, exact=False)
    assert not (await store.window(conversation, 1000)).rough, "everything fits: no exact count could add anything"
    assert (await store.window(conversation, 60)).rough, "cut, and a bound among the kept could be smaller than it says"
    await store.add_message(conversation, "assistant", "answer", 30)
    store.windows.clear()
    exact_only = await store.window(conversation, 30)
    assert texts(exact_only.messages) == ["answer"] and exact_only.rough, "the bound just past the cut might fit"


async def test_an_interrupted_answer_is_sized_by_its_saved_text(store: Store) -> None:
    conversation = await store.conversation_id(KEY)
    row = await store.begin_answer(conversation, "gpt-4o-mini")
    await store.save_partial(row, "héllo " * 100)
    assert await store.recover_interrupted() == 1
    [(text, tokens, exact)] = rows(store, "SELECT text, tokens, tokens_exact FROM messages")
    assert text.endswith("[This answer was interrupted.]")
    assert tokens == len(text.encode()) + 4 and not exact, "a bound on what the model will read, not zero"
