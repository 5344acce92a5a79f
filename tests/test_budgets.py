"""Money budgets, the fallback model and budget alerts: the engine against the fake model over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chatbots.commands import Caller, Commands
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.types import ConversationKey, Inbound
from tests.backend import open_store
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.test_caps import sent_limit, until_each_is_refused_or_held

KEY = ConversationKey("test", "T1", "C1", "thread-1")
PRICY = "gpt-4o-mini=1000/1000;gpt-4o=2000/2000"
"""A tenth of a cent a token (gpt-4o-mini) and two tenths (gpt-4o): budgets of a few dollars are a few thousand tokens."""


def asked(n: int, *, author: str = "U1", channel: str = "C1") -> Inbound:
    """A question in a thread of its own, so prompts stay the same size."""
    return Inbound(ConversationKey("test", "T1", channel, f"thread-{n}"), f"m{n}", author, "Ada", f"question {n}")


async def admin(engine: Engine, command: str, key: ConversationKey = KEY) -> str:
    return await Commands.for_engine(engine).run(Caller(key, "UADMIN", True), command)


@pytest.fixture
async def clocked(settings: Config) -> AsyncIterator[Callable[..., tuple[Engine, list[datetime]]]]:
    """An engine whose clock the test moves: (engine, [now])."""
    engines: list[Engine] = []

    def build(start: datetime, **overrides: object) -> tuple[Engine, list[datetime]]:
        now = [start]
        configured = replace(settings, prices=PRICY, **overrides)  # type: ignore[arg-type]
        engine = Engine(open_store(configured, lambda: now[0]), OpenAIChat.from_settings(configured), configured)
        engines.append(engine)
        return engine, now

    yield build
    for engine in engines:
        await engine.close()


async def test_ten_requests_at_once_cannot_overrun_a_money_budget(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000  # a talkative model: only the limit it is sent stops it
    engine = make_engine(max_output_tokens=1000, stall_timeout=60, prices=PRICY)
    assert "$3.00" in await admin(engine, "budget user day 3")
    for _ in range(10):
        model_server.queue(hold=True)
    replies = [RecordingReply() for _ in range(10)]
    tasks = [asyncio.create_task(engine.handle(asked(n), replies[n])) for n in range(10)]
    await until_each_is_refused_or_held(tasks, model_server)

    limits = [sent_limit(body) for body in model_server.requests]
    assert 1 < len(limits) < 10 and all(limit is not None and limit <= 1000 for limit in limits), limits
    assert min(limits) < 1000, "the last request admitted gets what the budget leaves"  # type: ignore[type-var]
    assert sum(limits) * 0.001 < 3.0  # type: ignore[operator]
    refused = [str(reply.notice) for task, reply in zip(tasks, replies) if task.done()]
    assert len(refused) == 10 - len(limits)
    assert all("your daily budget of $3.00" in n and "resets at midnight UTC" in n for n in refused), refused

    model_server.release_held()
    await asyncio.gather(*tasks)
    workspace = await engine.store.workspace_id("test", "T1")
    assert (await engine.limits.spend(workspace, "U1")).user_day <= 3.0


async def test_a_used_up_daily_budget_refuses_without_a_model_call_until_midnight(
    clocked: Callable[..., tuple[Engine, list[datetime]]], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine, now = clocked(datetime(2026, 12, 4, 22, 30, tzinfo=timezone.utc))
    await admin(engine, "budget user day 1")
    assert (await engine.handle(asked(1), RecordingReply())).status == "answered"  # spends what the budget leaves
    calls = len(model_server.requests)
    reply = RecordingReply()
    assert (await engine.handle(asked(2), reply)).status == "refused"
    assert "You've used your daily budget of $1.00" in str(reply.notice)
    assert "It resets at midnight UTC (in 1 h 30 min)." in str(reply.notice)
    assert len(model_server.requests) == calls
    assert (await engine.handle(asked(3, author="U2"), RecordingReply())).status == "answered", "per person"

    now[0] = datetime(2026, 12, 5, 0, 1, tzinfo=timezone.utc)
    assert (await engine.handle(asked(4), RecordingReply())).status == "answered"


async def test_a_monthly_budget_lasts_across_days_and_resets_on_the_first(
    clocked: Callable[..., tuple[Engine, list[datetime]]], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine, now = clocked(datetime(2026, 12, 30, 12, 0, tzinfo=timezone.utc))
    await admin(engine, "budget workspace month 1.5")
    assert (await engine.handle(asked(1), RecordingReply())).status == "answered"
    now[0] = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)  # a new day, the same month
    reply = RecordingReply()
    assert (await engine.handle(asked(2, author="U2"), reply)).status == "refused"
    assert "This workspace has used this workspace's monthly budget of $1.50" in str(reply.notice)
    assert "It resets on 1 January at 00:00 UTC (in 1 h 0 min)." in str(reply.notice)
    calls = len(model_server.requests)

    now[0] = datetime(2027, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert (await engine.handle(asked(3, author="U2"), RecordingReply())).status == "answered"
    assert len(model_server.requests) == calls + 1


async def test_past_an_allowance_the_fallback_model_answers_until_twice_it_then_refuses(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="gpt-4o", max_output_tokens=100, prices=PRICY)
    await admin(engine, "limit user 400")
    assert "`gpt-4o-mini`" in await admin(engine, "fallback gpt-4o-mini")
    replies: list[RecordingReply] = []
    statuses: list[str] = []
    for n in range(30):
        replies.append(RecordingReply())
        statuses.append((await engine.handle(asked(n), replies[-1])).status)
        if statuses[-1] == "refused":
            break
    models = [body["model"] for body in model_server.requests]
    switched = models.index("gpt-4o-mini")
    assert switched > 0 and set(models[:switched]) == {"gpt-4o"} and set(models[switched:]) == {"gpt-4o-mini"}
    notes = [n for n, reply in enumerate(replies) if "Answered with `gpt-4o-mini` instead of `gpt-4o`" in reply.text]
    assert notes == [switched], "the switch is said once a day per person"
    assert "daily allowance of 400 tokens" in replies[switched].text
    assert statuses[-1] == "refused" and "daily allowance of 800 tokens" in str(replies[-1].notice)
    assert "counts the fallback model `gpt-4o-mini`" in str(replies[-1].notice)
    workspace = await engine.store.workspace_id("test", "T1")
    assert sum((await engine.store.day_usage(workspace, engine.store.clock().date().isoformat())).values()) <= 800


async def test_without_a_fallback_an_allowance_used_up_is_a_refusal(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine = make_engine(model="gpt-4o", max_output_tokens=100, prices=PRICY)
    await admin(engine, "fallback gpt-4o-mini")
    assert "refused" in await admin(engine, "fallback off")
    await admin(engine, "limit user 400")
    statuses = [(await engine.handle(asked(n), RecordingReply())).status for n in range(8)]
    assert "refused" in statuses and {body["model"] for body in model_server.requests} == {"gpt-4o"}


async def test_alerts_are_posted_once_per_threshold_and_period(
    clocked: Callable[..., tuple[Engine, list[datetime]]], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine, now = clocked(datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc), max_output_tokens=40)
    posted: list[tuple[str, str, str]] = []

    async def notify(workspace: str, channel: str, text: str) -> None:
        posted.append((workspace, channel, text))

    engine.notifiers["test"] = notify
    await admin(engine, "budget workspace day 3", key=ConversationKey("test", "T1", "CADMIN", "CADMIN"))
    assert "posted here" in await admin(engine, "alerts here", key=ConversationKey("test", "T1", "CADMIN", "CADMIN"))
    statuses = [(await engine.handle(asked(n, author=f"U{n}"), RecordingReply())).status for n in range(70)]
    assert statuses[-1] == "refused"
    assert [(w, c) for w, c, _ in posted] == [("T1", "CADMIN")] * 3, (posted, statuses)
    assert [text.split("reached ")[1].split(" %")[0] for _, _, text in posted] == ["50", "80", "100"]
    assert "of its daily budget of $3.00" in posted[0][2] and "too little for another answer" in posted[2][2]

    now[0] += timedelta(days=1)  # a new period: each threshold once more
    for n in range(70, 140):
        await engine.handle(asked(n, author=f"U{n}"), RecordingReply())
    assert len(posted) == 6



async def test_a_budget_over_a_model_without_a_price_says_it_cannot_hold_it_back(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="my-local-model", prices=PRICY)
    note = "`my-local-model` has no price, so it costs nothing against budgets"
    answer = await admin(engine, "budget workspace day 2")
    assert "$2.00" in answer and note in answer and "CHATBOTS_PRICES" in answer
    assert note in await Commands.for_engine(engine).run(Caller(KEY, "U1", False), "budget")

    priced = make_engine(model="gpt-4o", prices=PRICY)
    answer = await admin(priced, "budget workspace day 2")
    assert "$2.00" in answer and "no price" not in answer
    model_server.models.append("my-model")
    assert "`my-model`" in await admin(priced, "fallback my-model")
    assert "`my-model` has no price" in await admin(priced, "budget user day 1"), "the fallback model is priced too"


async def test_alerts_follow_a_daily_token_cap_and_a_monthly_budget_too(
    clocked: Callable[..., tuple[Engine, list[datetime]]], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine, now = clocked(datetime(2026, 12, 30, 9, 0, tzinfo=timezone.utc), max_output_tokens=40)
    posted: list[str] = []

    async def notify(workspace: str, channel: str, text: str) -> None:
        posted.append(text)

    engine.notifiers["test"] = notify
    where = ConversationKey("test", "T1", "CADMIN", "CADMIN")
    await admin(engine, "alerts here", key=where)
    await admin(engine, "limit workspace 2000", key=where)
    for n in range(60):
        if (await engine.handle(asked(n, author=f"U{n}"), RecordingReply())).status == "refused":
            break
    assert [text.split("reached ")[1].split(" %")[0] for text in posted] == ["50", "80", "100"], posted
    assert all("of its daily cap of 2,000 tokens" in text for text in posted)

    await admin(engine, "limit workspace 0", key=where)
    await admin(engine, "budget workspace month 3", key=where)
    posted.clear()
    for day in range(2):  # the month's spend carries over a day: no threshold is posted twice
        now[0] += timedelta(days=day)
        for n in range(100 + 100 * day, 170 + 100 * day):
            if (await engine.handle(asked(n, author=f"U{n}"), RecordingReply())).status == "refused":
                break
    assert [text.split("reached ")[1].split(" %")[0] for text in posted] == ["50", "80", "100"], posted
    assert all("of its monthly budget of $3.00" in text for text in posted)


async def test_past_a_money_budget_the_fallback_model_answers_until_twice_it_then_refuses(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000
    engine = make_engine(model="gpt-4o", max_output_tokens=100, prices=PRICY)
    await admin(engine, "budget workspace day 1")
    await admin(engine, "fallback gpt-4o-mini")
    replies: list[RecordingReply] = []
    for n in range(60):
        replies.append(RecordingReply())
        if (await engine.handle(asked(n, author=f"U{n}"), replies[-1])).status == "refused":
            break
    models = [body["model"] for body in model_server.requests]
    switched = models.index("gpt-4o-mini")
    assert switched > 0 and set(models[:switched]) == {"gpt-4o"} and set(models[switched:]) == {"gpt-4o-mini"}
    assert "Answered with `gpt-4o-mini` instead of `gpt-4o`" in replies[switched].text
    assert "daily budget of $1.00" in replies[switched].text
    assert "daily budget of $2.00" in str(replies[-1].notice), replies[-1].notice
    workspace = await engine.store.workspace_id("test", "T1")
    assert (await engine.limits.spend(workspace, "")).workspace_day <= 2.0
