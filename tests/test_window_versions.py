"""Windows held in memory by replicas sharing PostgreSQL: two Stores on one real database.

A replica serves a conversation's window from memory only when the version its own write returned follows the
version its window reflects; every other change (another replica's turn, answer, forget, purge, recovery, exact
recount) bumps the version, so the next turn reads the window again. Each test fails if that writer forgot the bump.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from chatbots.store import Store
from chatbots.store.postgres import PostgresDatabase
from chatbots.types import ConversationKey
from tests.postgres import empty

KEY = ConversationKey("slack", "T1", "C1", "thread-1")
BUDGET = 100_000


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    empty(postgres_url)
    one, two = Store(PostgresDatabase.open(postgres_url)), Store(PostgresDatabase.open(postgres_url))
    yield one, two
    for store in (one, two):
        await store.close_turns()
        store.close()


async def turn(store: Store, text: str, hold: bool = True) -> list[str]:
    """What a turn does: holding the conversation, store the question, then read the window the model is sent."""
    async with store.turn(KEY) if hold else contextlib.nullcontext():
        conversation = await store.conversation_id(KEY)
        assert await store.add_message(conversation, "user", text, 5, author_id="U1", author_name="Ada", platform_id=text)
        return [message.text for message in (await store.window(conversation, BUDGET)).messages]


async def answer(store: Store, text: str) -> int:
    conversation = await store.conversation_id(KEY)
    row = await store.begin_answer(conversation, "gpt-4o")
    await store.complete_answer(row, text, 5, status="ok")
    return row


async def statements_of_a_turn(store: Store, text: str) -> int:
    before = store.sql.statements
    await turn(store, text)
    return store.sql.statements - before


async def test_a_replicas_own_turns_are_served_from_memory(replicas: tuple[Store, Store]) -> None:
    one, _ = replicas
    assert await turn(one, "q1") == ["q1"]
    await answer(one, "a1")
    assert await statements_of_a_turn(one, "q2") == 1, "only the INSERT: the window came from memory"
    assert await turn(one, "q3") == ["q1", "a1", "q2", "q3"]


async def test_a_write_outside_a_turn_vouches_for_nothing(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    conversation = await one.conversation_id(KEY)  # new: its (empty) window is held from the start
    await one.add_message(conversation, "user", "one", 5)  # not holding the turn: another replica may write next
    await two.add_message(await two.conversation_id(KEY), "assistant", "two", 5)
    assert [m.text for m in (await one.window(conversation, BUDGET)).messages] == ["one", "two"]


async def test_a_new_conversations_first_turn_reads_no_window(replicas: tuple[Store, Store]) -> None:
    one, _ = replicas
    await one.workspace_id("slack", "T1")  # a workspace seen before
    assert await statements_of_a_turn(one, "q1") == 2, "the conversation's INSERT and the question's: nothing read"


async def test_a_first_question_finds_or_creates_its_conversation_in_its_own_statement(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await one.workspace_id("slack", "T1")
    async with one.turn(KEY):
        before = one.sql.statements
        conversation, question, answer = await one.ask(KEY, "q1", 5, "gpt-4o", author_id="U1", platform_id="q1")
        assert one.sql.statements - before == 1, "conversation, question and the answer's row: one statement"
        assert question is not None and answer is not None and question < answer
        assert [m.text for m in (await one.window(conversation, BUDGET)).messages] == ["q1"]
        assert one.sql.statements - before == 1, "a new conversation's window is known: nothing read"
        await one.complete_answer(answer, "a1", 5, status="ok")
    async with two.turn(KEY):  # another replica, which holds no id for it: the same statement finds it
        found, again, _ = await two.ask(KEY, "q1", 5, "gpt-4o", platform_id="q1")
        assert (found, again) == (conversation, None), "a redelivery stores nothing"
        _, question2, answer2 = await two.ask(KEY, "q2", 5, "gpt-4o", platform_id="q2")
        assert question2 is not None and answer2 is not None
        assert [m.text for m in (await two.window(conversation, BUDGET)).messages] == ["q1", "a1", "q2"]
        await two.complete_answer(answer2, "a2", 5, status="ok")
    assert await turn(one, "q3") == ["q1", "a1", "q2", "a2", "q3"], "the first replica's held window is not trusted"


async def test_another_replicas_turn_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    await turn(two, "q2")
    assert await turn(one, "q3") == ["q1", "q2", "q3"]
    assert await turn(two, "q4") == ["q1", "q2", "q3", "q4"]


async def test_another_replicas_completed_answer_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    await answer(two, "a1")  # the answer alone: its row existed before, streaming
    assert await turn(one, "q2") == ["q1", "a1", "q2"]


async def test_another_replicas_forget_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    await answer(one, "a1")
    assert await two.forget_conversation(KEY) == 2
    assert await turn(one, "q2") == ["q2"], "forgotten messages never come back from memory"


async def test_another_replicas_channel_forget_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    assert await two.forget_channel(KEY.platform, KEY.workspace, KEY.channel) == 1
    assert await turn(one, "q2") == ["q2"]


async def test_another_replicas_purge_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    await answer(one, "a1")
    assert await two.purge("9999-01-01T00:00:00Z") == 2
    assert await turn(one, "q2") == ["q2"]


async def test_another_replicas_recovered_answer_is_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    conversation = await two.conversation_id(KEY)
    row = await two.begin_answer(conversation, "gpt-4o")
    await two.save_partial(row, "half an answer")
    # (not holding the conversation: a turn that holds it claims the answer at once, see test_replicas)
    assert await turn(one, "q2", hold=False) == ["q1", "q2"], "a streaming answer is not history yet"
    assert await two.recover_interrupted() == 1
    texts = await turn(one, "q3")
    assert texts[:1] == ["q1"] and texts[1].startswith("half an answer") and texts[2:] == ["q2", "q3"]


async def test_another_replicas_exact_counts_are_seen(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    conversation = await one.conversation_id(KEY)
    await one.add_message(conversation, "user", "rough", 50, exact=False, platform_id="rough")
    assert [m.tokens for m in (await one.window(conversation, BUDGET)).messages] == [50]
    assert await two.make_exact(conversation, BUDGET, lambda message: 7) == 1
    await one.add_message(conversation, "user", "next", 5, platform_id="next")
    assert [(m.tokens, m.exact) for m in (await one.window(conversation, BUDGET)).messages] == [(7, True), (5, True)]


async def test_a_window_read_without_a_write_of_this_turn_comes_from_the_database(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    await turn(one, "q1")
    await turn(two, "q2")
    conversation = await one.conversation_id(KEY)
    assert [m.text for m in (await one.window(conversation, BUDGET)).messages] == ["q1", "q2"]


async def test_settings_come_with_the_turns_lock_and_are_never_stale(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    async with one.turn(KEY):
        before = one.sql.statements
        assert await one.settings_for(KEY) == {}
        assert one.sql.statements == before, "read in the statement that took the turn's lock"
    workspace = await two.workspace_id(KEY.platform, KEY.workspace)
    await two.set_setting(workspace, "model", "gpt-4o-mini")
    await two.set_setting(workspace, "model", "o3", channel=KEY.channel)
    await two.set_setting(workspace, "model", "elsewhere", channel="C2")
    async with one.turn(KEY):
        assert await one.settings_for(KEY) == {"model": "gpt-4o-mini", "channel_model": "o3"}
    await two.set_setting(workspace, "model", None, channel=KEY.channel)
    async with one.turn(KEY):
        assert await one.settings_for(KEY) == {"model": "gpt-4o-mini"}
    assert await one.settings_for(KEY) == {"model": "gpt-4o-mini"}, "outside a turn: read on its own"


async def test_a_completed_answer_records_its_reply_parts_in_the_same_statement(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    conversation = await one.conversation_id(KEY)
    workspace = await one.workspace_id(KEY.platform, KEY.workspace)
    row = await one.begin_answer(conversation, "gpt-4o")
    before = one.sql.statements
    await one.complete_answer(row, "an answer in two posts", 5, status="ok", reply_parts=(workspace, ["p1", "p2", "p2"]))
    assert one.sql.statements == before + 1
    assert await two.record_feedback(workspace, "p2", "U2", 1) and await two.record_feedback(workspace, "p1", "U2", -1)
    assert not await two.record_feedback(workspace, "p3", "U2", 1)


async def test_a_write_vouches_for_the_window_only_within_its_turn(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    async with one.turn(KEY):
        await turn(one, "q1")
        conversation = await one.conversation_id(KEY)
        await one.add_message(conversation, "user", "context", 5, platform_id="context")  # stored, window not read
    await two.add_message(conversation, "user", "q2", 5, platform_id="q2")
    assert [m.text for m in (await one.window(conversation, BUDGET)).messages] == ["q1", "context", "q2"]


async def test_an_answer_forgotten_while_streaming_records_no_reply_parts(replicas: tuple[Store, Store]) -> None:
    one, two = replicas
    sqlite = Store.open(":memory:")
    try:
        for store, other in ((one, two), (sqlite, sqlite)):
            conversation = await store.conversation_id(KEY)
            workspace = await store.workspace_id(KEY.platform, KEY.workspace)
            row = await store.begin_answer(conversation, "gpt-4o")
            await other.forget_conversation(KEY)
            await store.complete_answer(row, "too late", 5, status="ok", reply_parts=(workspace, ["late"]))
            assert not await other.record_feedback(workspace, "late", "U2", 1)
    finally:
        sqlite.close()
