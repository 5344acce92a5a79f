"""Replicas on one PostgreSQL database behave as one bot: two Engines, each on its own Store and connection pools,
against a real server and the fake model over HTTP. Caps hold across them, a conversation's turns are answered
one after another whichever replica receives them, and other conversations do not wait.

The caps tests of tests/test_caps.py that matter run here too, on PostgreSQL (this module's make_engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.limits import RESERVATION_LEASE, Caps, Refused, UsageLimits
from chatbots.model import OpenAIChat
from chatbots.store import Store
from chatbots.store.postgres import PostgresDatabase
from chatbots.types import ConversationKey
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.postgres import empty
from tests.test_budgets import PRICY, asked
from tests.test_budgets import (  # money budgets and the fallback model, on PostgreSQL likewise
    test_past_an_allowance_the_fallback_model_answers_until_twice_it_then_refuses as test_pg_fallback_model,  # noqa: F401
    test_ten_requests_at_once_cannot_overrun_a_money_budget as test_pg_ten_requests_cannot_overrun_a_money_budget,  # noqa: F401
)
from tests.test_caps import (
    KEY,
    admin,
    said,
    sent_limit,
    until_each_is_refused_or_held,
    used_today,
)
from tests.test_caps import (  # the same scenarios, on PostgreSQL through this module's make_engine
    test_a_cap_too_small_for_the_prompt_and_a_short_answer_is_refused_clearly as test_pg_a_cap_too_small_is_refused,  # noqa: F401
    test_direct_messages_get_the_operators_caps_on_both_platforms as test_pg_direct_message_caps,  # noqa: F401
    test_over_a_used_up_daily_cap_nothing_is_moderated as test_pg_used_up_cap_nothing_moderated,  # noqa: F401
    test_the_rate_limit_is_checked_before_moderation as test_pg_rate_limit_before_moderation,  # noqa: F401
    test_the_real_usage_replaces_the_reservation_when_an_answer_ends as test_pg_usage_replaces_reservation,  # noqa: F401
    test_ten_requests_at_once_cannot_overrun_a_daily_cap as test_pg_ten_requests_cannot_overrun_a_cap,  # noqa: F401
    test_under_a_cap_the_limit_is_always_sent_and_without_one_nothing_changes as test_pg_limit_is_sent,  # noqa: F401
)


@pytest.fixture
async def make_engine(settings: Config, postgres_url: str) -> AsyncIterator[Callable[..., Engine]]:
    """Engines on one empty PostgreSQL database, each with its own Store: replicas, in one test process."""
    empty(postgres_url)
    engines: list[Engine] = []

    def build(**overrides: Any) -> Engine:
        configured = replace(settings, **overrides)
        store = Store(PostgresDatabase.open(postgres_url))
        engine = Engine(store, OpenAIChat.from_settings(configured), configured)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        await engine.close()


async def test_ten_requests_over_two_replicas_cannot_overrun_a_daily_cap(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000  # only the limit each request is sent stops the model
    replicas = [make_engine(max_output_tokens=1000, stall_timeout=60) for _ in range(2)]
    await admin(replicas[0], "limit user 3000")  # set through one replica, in force on both
    for _ in range(10):
        model_server.queue(hold=True)
    replies = [RecordingReply() for _ in range(10)]
    tasks = [
        asyncio.create_task(replicas[n % 2].handle(said("go", n, key=replace(KEY, thread=f"t{n}")), replies[n]))
        for n in range(10)
    ]
    await until_each_is_refused_or_held(tasks, model_server)

    limits = [sent_limit(body) for body in model_server.requests]
    assert 1 < len(limits) < 10
    assert sum(limits) <= 3000, limits  # type: ignore[arg-type]
    refused = [reply.notice for task, reply in zip(tasks, replies) if task.done()]
    assert len(refused) == 10 - len(limits) and all("daily allowance of 3,000 tokens" in str(n) for n in refused)

    model_server.release_held()
    results = await asyncio.gather(*tasks)
    assert [r.status for r in results].count("answered") == len(limits)
    assert await used_today(replicas[1]) <= 3000


async def test_the_rate_limit_counts_requests_on_every_replica(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    a, b = make_engine(), make_engine()
    await admin(b, "limit rate 2")
    assert (await a.handle(said("one", 1, key=replace(KEY, thread="r1")), RecordingReply())).status == "answered"
    assert (await b.handle(said("two", 2, key=replace(KEY, thread="r2")), RecordingReply())).status == "answered"
    reply = RecordingReply()
    assert (await a.handle(said("three", 3, key=replace(KEY, thread="r3")), reply)).status == "refused"
    assert "2 per minute" in str(reply.notice) and len(model_server.requests) == 2


async def test_a_reservation_left_by_a_killed_replica_stops_counting_after_its_lease(
    make_engine: Callable[..., Engine], postgres_url: str
) -> None:
    engine = make_engine()  # empties the database and migrates it
    now = [datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)]
    store = Store(PostgresDatabase.open(postgres_url, lambda: now[0]))
    try:
        workspace = await store.workspace_id("test", "T1")
        caps = Caps(user_daily=3000)
        killed = UsageLimits(store, lambda: now[0])
        await killed.admit(workspace, "U1", caps, 100, 2800)  # never settled: its replica died
        survivor = UsageLimits(store, lambda: now[0], engine.answer_lease)
        with pytest.raises(Refused):
            await survivor.admit(workspace, "U1", caps, 100, 2500)
        assert await survivor.remaining(workspace, "U1", caps) == 100

        now[0] += RESERVATION_LEASE + timedelta(seconds=1)
        admitted = await survivor.admit(workspace, "U1", caps, 100, 2500)
        assert admitted.output_limit == 2500
        await survivor.settle(admitted, "gpt-4o-mini", None)
        assert await survivor.remaining(workspace, "U1", caps) == 3000
    finally:
        await store.close_turns()
        store.close()


async def test_two_messages_in_one_conversation_on_two_replicas_are_answered_one_after_the_other(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    a, b = make_engine(), make_engine()
    model_server.queue("the first answer", hold=True)  # whichever turn gets the conversation first is held here
    model_server.queue("the second answer")
    first_reply, second_reply = RecordingReply(), RecordingReply()
    turns = [
        asyncio.create_task(a.handle(said("from replica a", 1), first_reply)),
        asyncio.create_task(b.handle(said("from replica b", 2), second_reply)),
    ]
    await model_server.wait_for_requests(1)
    model_server.release_held()
    results = await asyncio.gather(*turns)

    assert [r.status for r in results] == ["answered", "answered"]
    first_asked = model_server.requests[0]["messages"][-1]["content"]
    second_asked = "from replica b" if first_asked == "from replica a" else "from replica a"
    assert [(m["role"], m["content"]) for m in model_server.requests[1]["messages"][1:]] == [
        ("user", first_asked), ("assistant", "the first answer"), ("user", second_asked),
    ]


async def test_other_conversations_go_on_while_one_is_being_answered_on_either_replica(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    a, b = make_engine(), make_engine()
    model_server.queue("slow answer", hold=True)
    model_server.queue("fast answer")
    model_server.queue("faster answer")
    slow = asyncio.create_task(a.handle(said("slow", 1), RecordingReply()))
    await model_server.wait_for_requests(1)

    elsewhere = RecordingReply()
    result = await b.handle(said("other thread", 2, key=replace(KEY, thread="other")), elsewhere)
    assert result.status == "answered" and elsewhere.text == "fast answer"
    same_replica = RecordingReply()
    result = await a.handle(said("third thread", 3, key=replace(KEY, thread="third")), same_replica)
    assert result.status == "answered" and same_replica.text == "faster answer"
    assert not slow.done()
    model_server.release_held()
    assert (await slow).answer == "slow answer"


async def test_a_conversation_goes_on_after_a_turn_on_another_replica_failed(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    a, b = make_engine(model_retries=0), make_engine()
    model_server.queue(status=500)
    assert (await a.handle(said("fails", 1), RecordingReply())).status == "failed"
    model_server.queue("carried on")
    assert (await b.handle(said("again", 2), RecordingReply())).answer == "carried on"
    model_server.queue("and on")
    assert (await a.handle(said("once more", 3), RecordingReply())).answer == "and on"


def test_the_conversation_lock_key_is_stable_and_tells_threads_apart() -> None:
    from chatbots.store import turn_key

    assert turn_key(KEY) == turn_key(ConversationKey(*("test", "T1", "C1", "thread-1")))
    assert turn_key(KEY) != turn_key(replace(KEY, thread="thread-2"))
    assert -(2**63) <= turn_key(KEY) < 2**63


async def test_ten_requests_over_two_replicas_cannot_overrun_a_money_budget(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    replicas = [make_engine(max_output_tokens=1000, stall_timeout=60, prices=PRICY) for _ in range(2)]
    await admin(replicas[0], "budget workspace day 3")  # a tenth of a cent a token: 3,000 tokens
    for _ in range(10):
        model_server.queue(hold=True)
    replies = [RecordingReply() for _ in range(10)]
    tasks = [asyncio.create_task(replicas[n % 2].handle(asked(n, author=f"U{n}"), replies[n])) for n in range(10)]
    await until_each_is_refused_or_held(tasks, model_server)

    limits = [sent_limit(body) for body in model_server.requests]
    assert 1 < len(limits) < 10 and sum(limits) * 0.001 < 3.0, limits  # type: ignore[operator]
    refused = [str(reply.notice) for task, reply in zip(tasks, replies) if task.done()]
    assert len(refused) == 10 - len(limits) and all("daily budget of $3.00" in n for n in refused), refused
    model_server.release_held()
    await asyncio.gather(*tasks)
    workspace = await replicas[1].store.workspace_id("test", "T1")
    assert (await replicas[1].limits.spend(workspace, "U0")).workspace_day <= 3.0


async def test_two_replicas_post_each_alert_once(make_engine: Callable[..., Engine], model_server: FakeModelServer) -> None:
    model_server.answer_tokens = 5000
    replicas = [make_engine(max_output_tokens=40, prices=PRICY) for _ in range(2)]
    posted: list[str] = []

    async def notify(workspace: str, channel: str, text: str) -> None:
        posted.append(text)

    for replica in replicas:
        replica.notifiers["test"] = notify
    await admin(replicas[0], "budget workspace day 3")
    await admin(replicas[1], "alerts here")
    for n in range(70):
        await replicas[n % 2].handle(asked(n, author=f"U{n}"), RecordingReply())
    assert [text.split("reached ")[1].split(" %")[0] for text in posted] == ["50", "80", "100"]
