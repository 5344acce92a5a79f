"""Caps are ceilings and floods are bounded: the engine against the fake model over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from chatbots.commands import Caller, Commands
from chatbots.engine import BUSY_NOTICE, MAX_WAITING_TURNS, NO_ROOM_NOTICE, TRUNCATION_NOTICE, Engine, TurnResult
from chatbots.limits import MIN_ANSWER_TOKENS, Caps, UsageLimits
from chatbots.types import ConversationKey, Inbound
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply

KEY = ConversationKey("test", "T1", "C1", "thread-1")
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")


def said(text: str, n: int, *, key: ConversationKey = KEY, author: str = "U1") -> Inbound:
    return Inbound(key, f"m{n}", author, "Ada", text)


async def admin(engine: Engine, command: str, key: ConversationKey = KEY) -> str:
    return await Commands.for_engine(engine).run(Caller(key, "UADMIN", True), command)


def sent_limit(body: dict) -> int | None:
    """The output limit a request carried (the same under every name it was sent as)."""
    values = {body[name] for name in LIMIT_FIELDS if name in body}
    assert len(values) <= 1, body
    return values.pop() if values else None


async def used_today(engine: Engine, key: ConversationKey = KEY) -> int:
    rows = await engine.store.usage_rows("2000-01-01", (key.platform, key.workspace))
    return sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)


async def until_each_is_refused_or_held(tasks: Sequence[asyncio.Task[TurnResult]], server: FakeModelServer) -> None:
    """Wait, woken by each finished turn and each request the fake receives (never by a timer), until every turn
    is either over or holding its request at the server."""
    async with asyncio.timeout(10):
        while sum(task.done() for task in tasks) + len(server.requests) < len(tasks):
            arrival = asyncio.ensure_future(server.wait_for_requests(len(server.requests) + 1, timeout=10))
            await asyncio.wait([arrival, *(t for t in tasks if not t.done())], return_when=asyncio.FIRST_COMPLETED)
            arrival.cancel()


async def test_ten_requests_at_once_cannot_overrun_a_daily_cap(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    model_server.answer_tokens = 5000  # a talkative model: only the limit it is sent stops it
    engine = make_engine(max_output_tokens=1000, stall_timeout=60)  # held requests wait as long as the test needs
    await admin(engine, "limit user 3000")
    for _ in range(10):
        model_server.queue(hold=True)  # every admitted request stays in flight until all ten were decided
    replies = [RecordingReply() for _ in range(10)]
    keys = [ConversationKey("test", "T1", "C1", f"thread-{n}") for n in range(10)]
    tasks = [asyncio.create_task(engine.handle(said("go", n, key=keys[n]), replies[n])) for n in range(10)]
    await until_each_is_refused_or_held(tasks, model_server)

    limits = [sent_limit(body) for body in model_server.requests]
    assert 1 < len(limits) < 10
    assert all(limit is not None and MIN_ANSWER_TOKENS <= limit <= 1000 for limit in limits), limits
    assert min(limits) < 1000, "the last request admitted gets what is left, not the configured limit"  # type: ignore[type-var]
    assert sum(limits) <= 3000  # type: ignore[arg-type]
    refused = [reply.notice for task, reply in zip(tasks, replies) if task.done()]
    assert len(refused) == 10 - len(limits) and all("daily allowance of 3,000 tokens" in str(n) for n in refused)

    model_server.release_held()
    results = await asyncio.gather(*tasks)
    assert [r.status for r in results].count("answered") == len(limits)
    assert await used_today(engine) <= 3000


async def test_a_cap_too_small_for_the_prompt_and_a_short_answer_is_refused_clearly(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine()
    await admin(engine, "limit user 60")
    reply = RecordingReply()
    result = await engine.handle(said("a question that, with the instructions, needs more than sixty tokens", 1), reply)
    assert result.status == "refused" and not model_server.requests
    assert reply.notice is not None
    assert "needs about" in reply.notice and "more than the daily allowance of 60 tokens per person" in reply.notice
    stored = await engine.store.run(engine.store.sql.query_dicts, "SELECT role, status FROM messages ORDER BY id")
    assert stored == [{"role": "user", "status": "ok"}], "the answer's row, begun with the question, is gone"


async def test_under_a_cap_the_limit_is_always_sent_and_without_one_nothing_changes(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine()
    await engine.handle(said("no cap here", 1), RecordingReply())
    assert sent_limit(model_server.requests[-1]) is None  # as before: the server decides

    await admin(engine, "limit workspace 1000000")
    await engine.handle(said("capped now", 2), RecordingReply())
    assert sent_limit(model_server.requests[-1]) == engine.output_reserve(engine.context_tokens(engine.counter("gpt-4o-mini")))


async def test_the_real_usage_replaces_the_reservation_when_an_answer_ends(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(max_output_tokens=1000)
    await admin(engine, "limit user 1500")  # room to reserve one answer of 1,000 at a time
    for n in range(4):  # short answers: each releases what it did not use
        assert (await engine.handle(said(f"short {n}", n, key=ConversationKey("test", "T1", "C1", f"t{n}")), RecordingReply())).status == "answered"
    assert await used_today(engine) <= 1500


async def test_the_rate_limit_is_checked_before_moderation(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(moderation=True)
    await admin(engine, "limit rate 1")
    await engine.handle(said("first", 1), RecordingReply())
    checked = len(model_server.moderation_requests)
    reply = RecordingReply()
    assert (await engine.handle(said("second, too soon", 2), reply)).status == "refused"
    assert "1 per minute" in str(reply.notice)
    assert len(model_server.moderation_requests) == checked and len(model_server.requests) == 1


async def test_over_a_used_up_daily_cap_nothing_is_moderated(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(moderation=True)
    await admin(engine, "limit user 200")
    model_server.queue("x" * 300, chunks=300)  # a server that ignores the limit: 300 tokens, over the cap
    await engine.handle(said("first", 1), RecordingReply())
    checked = len(model_server.moderation_requests)
    reply = RecordingReply()
    assert (await engine.handle(said("more", 2, key=ConversationKey("test", "T1", "C1", "t2")), reply)).status == "refused"
    assert "You've used your daily allowance of 200 tokens" in str(reply.notice)
    assert len(model_server.moderation_requests) == checked


async def test_a_flood_into_one_conversation_is_turned_away_and_nothing_accepted_is_lost(
    engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.queue(hold=True)
    first = asyncio.create_task(engine.handle(said("first", 0), RecordingReply()))
    await model_server.wait_for_requests(1)
    waiting = [asyncio.create_task(engine.handle(said(f"queued {n}", n), RecordingReply())) for n in range(1, MAX_WAITING_TURNS + 1)]
    turned_away = RecordingReply()
    result = await asyncio.create_task(engine.handle(said("one too many", 99), turned_away))  # runs after those queued
    assert result.status == "busy" and turned_away.notice == BUSY_NOTICE and turned_away.started == 0

    model_server.release_held()
    results = await asyncio.gather(first, *waiting)
    assert [r.status for r in results] == ["answered"] * (MAX_WAITING_TURNS + 1)
    asked = [m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "user"]
    assert asked == ["first"] + [f"queued {n}" for n in range(1, MAX_WAITING_TURNS + 1)]
    assert (await engine.handle(said("after the flood", 100), RecordingReply())).status == "answered"


async def test_request_times_and_usage_totals_are_forgotten_once_they_no_longer_matter(engine: Engine) -> None:
    now = [datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)]
    limits = UsageLimits(engine.store, lambda: now[0])
    caps = Caps(user_daily=10**9, per_minute=5)
    workspace = await engine.store.workspace_id("test", "T1")
    for n in range(500):
        await limits.settle(await limits.admit(workspace, f"U{n}", caps, 10, 10), "gpt-4o-mini", None)
    assert len(limits._recent) == 500
    now[0] += timedelta(days=1, minutes=2)
    await limits.settle(await limits.admit(workspace, "U-late", caps, 10, 10), "gpt-4o-mini", None)
    assert list(limits._recent) == [(workspace, "U-late")]
    assert [day for _, day in limits._used] == ["2026-11-26"]


async def test_direct_messages_get_the_operators_caps_on_both_platforms(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(dm_limit_rate=1)
    discord_dm = ConversationKey("discord", "dm", "555", "555")
    slack_dm = ConversationKey("slack", "T1", "D0123", "1700000000.000100")
    server_channel = ConversationKey("discord", "4242", "777", "777")
    for key in (discord_dm, slack_dm):
        assert (await engine.handle(said("hi", 1, key=key), RecordingReply())).status == "answered"
        reply = RecordingReply()
        assert (await engine.handle(said("again", 2, key=key), reply)).status == "refused"
        assert "1 per minute" in str(reply.notice)
    for n in range(3):
        assert (await engine.handle(said("no cap in a server", n, key=server_channel), RecordingReply())).status == "answered"


async def test_in_direct_messages_the_stricter_of_the_operators_and_the_admins_caps_applies(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    dm = ConversationKey("discord", "dm", "555", "555")
    engine = make_engine(dm_limit_rate=5)
    await admin(engine, "limit rate 1", key=dm)  # CHATBOTS_ADMINS may set caps in DMs too
    assert "1 requests per person per minute" in await admin(engine, "limits", key=dm)
    await engine.handle(said("hi", 1, key=dm), RecordingReply())
    assert (await engine.handle(said("again", 2, key=dm), RecordingReply())).status == "refused"

    dm_limited = make_engine(dm_limit_rate=1)
    await admin(dm_limited, "limit rate 5", key=dm)
    notes = await admin(dm_limited, "limits", key=dm)
    assert "1 requests per person per minute" in notes and "operator also allows at most 1 requests" in notes
    await dm_limited.handle(said("hi", 3, key=dm), RecordingReply())
    assert (await dm_limited.handle(said("again", 4, key=dm), RecordingReply())).status == "refused"


async def test_long_instructions_never_cut_a_first_message_that_fits(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=4096)
    # ~600 tokens, ~3,400 bytes: as a byte bound the instructions alone would leave almost no room.
    await admin(engine, "instructions set " + "Answer politely and briefly. " * 120)
    restarted = make_engine(context_tokens=4096)  # a fresh start: the tokenizer is not loaded yet
    question = "please summarise this: " + "hello there " * 500  # ~1,000 tokens, 6,000 bytes: fits once counted
    reply = RecordingReply()
    assert (await restarted.handle(said(question, 1), reply)).status == "answered"
    assert model_server.requests[-1]["messages"][-1]["content"] == question
    assert TRUNCATION_NOTICE not in reply.text


async def test_for_a_model_whose_tokenizer_is_unknown_the_prompt_is_reserved_at_its_byte_size(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="local-llm")  # counted with a default encoding that may undercount its own
    await admin(engine, "limit user 1100")  # less than the prompt and the default limit of 1,024
    await engine.handle(said("héllo wörld", 1), RecordingReply())
    [system, user] = model_server.requests[-1]["messages"]
    prompt = len(system["content"].encode()) + 4 + len("Ada: héllo wörld".encode()) + 4 + 3
    assert sent_limit(model_server.requests[-1]) == 1100 - prompt


async def test_instructions_filling_the_window_get_a_clear_reply_and_no_model_call(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    await admin(make_engine(), "instructions set " + "Answer politely and briefly. " * 190)  # ~950 tokens
    small = make_engine(context_tokens=1024)  # the window shrank afterwards (CHATBOTS_CONTEXT_TOKENS changed)
    reply = RecordingReply()
    assert (await small.handle(said("hi", 1), reply)).status == "no_room"
    assert reply.notice == NO_ROOM_NOTICE and not model_server.requests
