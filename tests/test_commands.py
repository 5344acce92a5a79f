"""`/chatbot` in the core: who may change what, what bad text gets, and what each change does to the next answer.

These drive `Commands` and `Engine` directly over the fake model; the platforms' part (who counts as admin there,
the private answer, one change end to end per transport) is in test_admin_commands.py and test_discord_admin.py.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chatbots.commands import Caller, Commands
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.pricing import PriceList
from chatbots.types import ConversationKey, Inbound
from tests.backend import open_store, rows
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply

_ids = itertools.count(1)


def caller(user: str = "U1", *, admin: bool = False, team: str = "T1", channel: str = "C1") -> Caller:
    """A Slack-shaped caller: commands are typed in a channel, so the key's thread is the channel."""
    return Caller(ConversationKey("slack", team, channel, channel), user, admin)


ADMIN = caller("UADMIN", admin=True)
MEMBER = caller("U1")


async def ask(engine: Engine, text: str, *, user: str = "U1", team: str = "T1", channel: str = "C1",
              thread: str | None = None) -> tuple[str, RecordingReply]:
    """One question in a new thread (or the given one); returns the turn's status and what it showed."""
    n = next(_ids)
    key = ConversationKey("slack", team, channel, thread or f"thread-{n}")
    reply = RecordingReply()
    result = await engine.handle(Inbound(key, f"m{n}", user, user.lower(), text), reply)
    return result.status, reply


async def audit_rows(engine: Engine) -> list[dict]:
    return await engine.store.audit_log()


def settings_rows(engine: Engine) -> list[tuple]:
    return rows(engine.store, "SELECT workspace_id, channel, name, value FROM settings ORDER BY 1, 2, 3")


@pytest.fixture
def commands(engine: Engine) -> Commands:
    return Commands.for_engine(engine)


CHANGES = [
    "instructions set Be brief.",
    "instructions clear",
    "instructions channel set Talk about payments.",
    "instructions channel clear",
    "model set gpt-4o",
    "limit user 5000",
    "limit workspace 90000",
    "limit rate 3",
    "moderation off",
    "forget",
]


async def test_non_admins_are_refused_every_change_and_nothing_changes(commands: Commands, engine: Engine) -> None:
    await commands.run(ADMIN, "instructions channel set Existing channel rule.")
    await commands.run(ADMIN, "instructions set Existing rule.")
    before, audit_before = settings_rows(engine), await audit_rows(engine)
    for command in CHANGES:
        answer = await commands.run(MEMBER, command)
        assert "Only" in answer and "admin" in answer, command
        assert settings_rows(engine) == before and await audit_rows(engine) == audit_before, command


async def test_admins_change_settings_and_each_change_is_audited(commands: Commands, engine: Engine) -> None:
    for command in CHANGES[:-1]:
        before = len(await audit_rows(engine))
        answer = await commands.run(ADMIN, command)
        assert "Only" not in answer, command
        rows = await audit_rows(engine)
        assert len(rows) == before + 1, command
        assert rows[0]["actor_id"] == "UADMIN" and rows[0]["workspace"] == "T1", command


async def test_configured_admin_ids_count_as_admins(make_engine: Callable[..., Engine]) -> None:
    commands = Commands.for_engine(make_engine(admins=frozenset({"U7"})))
    assert "Daily tokens per person: 10" in await commands.run(caller("U7"), "limit user 10")
    assert "Only" in await commands.run(caller("U8"), "limit user 10")


async def test_anyone_may_read_help_instructions_limits_and_their_usage(commands: Commands) -> None:
    assert "instructions set" not in await commands.run(MEMBER, "help")
    assert "instructions set" in await commands.run(ADMIN, "help")
    assert "default instructions" in await commands.run(MEMBER, "instructions")
    assert "no limit" in await commands.run(MEMBER, "limits")
    own = await commands.run(MEMBER, "usage")
    assert own.startswith("You: 0 tokens today") and "top users" not in own


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("frobnicate", "I don't know `frobnicate`"),
        ("limit user", "Usage: `limit user N`"),
        ("limit user lots", "needs a whole number"),
        ("limit user ²", "needs a whole number of 0 or more in digits 0-9"),
        ("limit user ٣", "needs a whole number of 0 or more in digits 0-9"),
        ("limit user -5", "needs a whole number"),
        ("limit user 1e5", "needs a whole number"),
        ("limit user " + "9" * 5000, "can be at most 1,000,000,000,000"),
        ("limit rate 10001", "can be at most 10,000"),
        ("limit galaxy 5", "Usage: `limit user N`"),
        ("instructions set", "Give the instructions after `set`"),
        ("instructions set " + "x" * 50_000, "50,000 characters; the limit is 8,000"),
        ("model set", "Usage: `model`"),
        ("moderation maybe", "Usage: `moderation`"),
    ],
)
async def test_bad_command_text_gets_a_usage_line_and_changes_nothing(
    commands: Commands, engine: Engine, command: str, expected: str
) -> None:
    before = settings_rows(engine)
    assert expected in await commands.run(ADMIN, command)
    assert settings_rows(engine) == before and not await audit_rows(engine)


async def test_workspace_and_channel_instructions_reach_the_model_only_where_they_apply(
    commands: Commands, engine: Engine, model_server: FakeModelServer
) -> None:
    assert "updated" in await commands.run(ADMIN, "instructions set Answer like a pirate.")
    await commands.run(ADMIN, "instructions channel set Keep it about payments.")
    await ask(engine, "hi", channel="C1")
    assert model_server.requests[-1]["messages"][0]["content"] == "Answer like a pirate.\n\nKeep it about payments."
    await ask(engine, "hi", channel="C2")
    assert model_server.requests[-1]["messages"][0]["content"] == "Answer like a pirate."
    await ask(engine, "hi", channel="C1", team="T2")
    assert "pirate" not in model_server.requests[-1]["messages"][0]["content"], "another workspace is untouched"


async def test_model_set_is_checked_against_the_servers_list(
    commands: Commands, engine: Engine, model_server: FakeModelServer
) -> None:
    refused = await commands.run(ADMIN, "model set gpt-9-imaginary")
    assert "doesn't offer `gpt-9-imaginary`" in refused and "`gpt-4o`" in refused
    assert "to `gpt-4o`" in await commands.run(ADMIN, "model set gpt-4o")
    await ask(engine, "which model?")
    assert model_server.requests[-1]["model"] == "gpt-4o"


async def test_over_the_daily_cap_the_model_is_not_called_and_the_reset_is_named(
    commands: Commands, engine: Engine, model_server: FakeModelServer
) -> None:
    await commands.run(ADMIN, "limit user 2000")
    model_server.answer_tokens = 100_000  # the first answer talks until its limit: all the allowance it may have
    assert (await ask(engine, "first question"))[0] == "answered"
    status, reply = await ask(engine, "second question")
    assert status == "refused" and reply.notice is not None
    assert "You've used your daily allowance of 2,000 tokens" in reply.notice and "midnight UTC" in reply.notice
    assert len(model_server.requests) == 1


async def test_the_rate_limit_refuses_the_request_over_the_limit(
    commands: Commands, engine: Engine, model_server: FakeModelServer
) -> None:
    await commands.run(ADMIN, "limit rate 2")
    for _ in range(2):
        assert (await ask(engine, "quick one"))[0] == "answered"
    status, reply = await ask(engine, "one too many")
    assert status == "refused" and "2 per minute" in str(reply.notice) and len(model_server.requests) == 2


@pytest.fixture
async def clocked(settings: Config) -> AsyncIterator[tuple[Engine, list[datetime]]]:
    """An engine whose store reads a clock the test moves."""
    now = [datetime(2026, 11, 25, 23, 50, tzinfo=timezone.utc)]
    engine = Engine(open_store(settings, lambda: now[0]), OpenAIChat.from_settings(settings), settings)
    yield engine, now
    await engine.close()


async def test_daily_caps_reset_at_utc_midnight(
    clocked: tuple[Engine, list[datetime]], model_server: FakeModelServer
) -> None:
    engine, now = clocked
    await Commands.for_engine(engine).run(ADMIN, "limit workspace 2000")
    model_server.answer_tokens = 100_000
    await ask(engine, "use it up")
    status, reply = await ask(engine, "more")
    assert status == "refused" and "in 10 min" in str(reply.notice)
    model_server.answer_tokens = None
    now[0] += timedelta(minutes=11)
    status, reply = await ask(engine, "new day")
    assert status == "answered" and reply.text == "echo: new day"


async def test_usage_report_shows_tokens_cost_top_users_and_own_allowance(
    commands: Commands, engine: Engine
) -> None:
    await commands.run(ADMIN, "limit user 100000")
    await ask(engine, "hello", user="U1")
    await ask(engine, "and me?", user="UADMIN")
    rows = await engine.store.usage_rows("2000-01-01")
    tokens = {r["user_id"]: r["prompt_tokens"] + r["completion_tokens"] for r in rows}
    total = sum(tokens.values())
    cost = sum(PriceList().cost(r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in rows)
    report = await commands.run(ADMIN, "usage")
    assert f"today: {total:,} tokens (~${cost:,.2f})" in report
    assert f"<@U1> {tokens['U1']:,}" in report and f"<@UADMIN> {tokens['UADMIN']:,}" in report
    assert "👍 0 · 👎 0" in report
    own = await commands.run(MEMBER, "usage")
    assert f"You: {tokens['U1']:,} tokens today" in own and f"{100000 - tokens['U1']:,} more today" in own
    assert "top users" not in own


async def test_forget_erases_the_channels_history(
    commands: Commands, engine: Engine, model_server: FakeModelServer
) -> None:
    await ask(engine, "remember pineapple", thread="C1")
    assert "Erased this channel's stored history (2 messages)" in await commands.run(ADMIN, "forget")
    await ask(engine, "what fruit?", thread="C1")
    assert "pineapple" not in str(model_server.requests[-1]["messages"])


async def test_settings_in_one_workspace_never_affect_another(commands: Commands, engine: Engine) -> None:
    await commands.run(caller("UADMIN", admin=True, team="T1"), "limit user 1")
    await ask(engine, "use it", team="T1")
    status, reply = await ask(engine, "other team", team="T2")
    assert status == "answered" and reply.text == "echo: other team"


POLITE = "Answer politely and briefly. "  # 5 tokens


async def test_instructions_leaving_the_conversation_under_a_quarter_of_the_window_are_flagged(
    make_engine: Callable[..., Engine]
) -> None:
    commands = Commands.for_engine(make_engine(context_tokens=2048))
    assert "Note:" not in await commands.run(ADMIN, "instructions set " + POLITE * 100)
    answer = await commands.run(ADMIN, "instructions set " + POLITE * 260)  # ~1,300 tokens of 2,048
    assert "Workspace instructions updated" in answer
    assert "window for the conversation, less than a quarter" in answer
    channel = await commands.run(ADMIN, "instructions channel set " + POLITE * 20)  # the two add up
    assert "Channel instructions set" in channel and "less than a quarter" in channel


async def test_instructions_that_leave_no_room_for_the_conversation_are_refused(
    make_engine: Callable[..., Engine]
) -> None:
    engine = make_engine(context_tokens=1536)
    commands = Commands.for_engine(engine)
    answer = await commands.run(ADMIN, "instructions set " + POLITE * 260)
    assert "too little to answer anything" in answer and "Nothing was changed" in answer
    assert not await audit_rows(engine)
    await commands.run(ADMIN, "instructions set " + POLITE * 150)
    assert "too little to answer anything" in await commands.run(ADMIN, "instructions channel set " + POLITE * 150)
