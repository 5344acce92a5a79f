"""`/chatbot` on Slack: who may change what, what changes, and what it does to the next answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from dataclasses import replace

from chatbots.config import Settings
from chatbots.pricing import PriceList
from tests.fakes.slack import channel_message, next_ts, reaction_added
from tests.slack_rig import SlackRig, slack_rig


@pytest.fixture(params=["http", "socket"])
async def rig(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param) as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.slack.add_user("UOWNER", name="founder", is_owner=True)
        rig.slack.add_user("U1", name="ada")
        yield rig


@pytest.fixture
async def http_rig(settings: Settings) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, "http") as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.slack.add_user("U1", name="ada")
        yield rig


async def audit_rows(rig: SlackRig) -> list[dict]:
    return await rig.bot.engine.store.audit_log()


def settings_rows(rig: SlackRig) -> list[tuple]:
    return rig.bot.engine.store.db.execute("SELECT workspace_id, channel, name, value FROM settings ORDER BY 1, 2, 3").fetchall()


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


@pytest.mark.parametrize("command", CHANGES)
async def test_non_admins_are_refused_every_change_and_nothing_changes(rig: SlackRig, command: str) -> None:
    await rig.command("instructions channel set Existing channel rule.", user="UADMIN")
    await rig.command("instructions set Existing rule.", user="UADMIN")
    before, audit_before = settings_rows(rig), await audit_rows(rig)
    answer = await rig.command(command, user="U1")
    assert "Only" in answer and "admin" in answer
    assert settings_rows(rig) == before and await audit_rows(rig) == audit_before


@pytest.mark.parametrize("command", CHANGES[:-1])
async def test_admins_and_owners_change_settings_and_each_change_is_audited(rig: SlackRig, command: str) -> None:
    for user in ("UADMIN", "UOWNER"):
        before = len(await audit_rows(rig))
        answer = await rig.command(command, user=user)
        assert "Only" not in answer
        rows = await audit_rows(rig)
        assert len(rows) == before + 1
        assert rows[0]["actor_id"] == user and rows[0]["workspace"] == "T1"


async def test_configured_admin_ids_count_as_admins(settings: Settings) -> None:
    from dataclasses import replace

    async with slack_rig(replace(settings, admins=frozenset({"U7"}))) as rig:
        assert "Daily tokens per person: 10" in await rig.command("limit user 10", user="U7")


async def test_anyone_may_read_help_instructions_limits_and_their_usage(rig: SlackRig) -> None:
    assert "instructions set" not in await rig.command("help", user="U1")
    assert "instructions set" in await rig.command("help", user="UADMIN")
    assert "default instructions" in await rig.command("instructions", user="U1")
    assert "no limit" in await rig.command("limits", user="U1")
    own = await rig.command("usage", user="U1")
    assert own.startswith("You: 0 tokens today") and "top users" not in own


async def test_workspace_and_channel_instructions_reach_the_model_only_where_they_apply(rig: SlackRig) -> None:
    assert "updated" in await rig.command("instructions set Answer like a pirate.", user="UADMIN")
    await rig.command("instructions channel set Keep it about payments.", user="UADMIN", channel="C1")
    ts = await rig.mention("hi", channel="C1")
    await rig.reply_in("C1", ts)
    assert rig.model.requests[-1]["messages"][0]["content"] == "Answer like a pirate.\n\nKeep it about payments."
    ts = await rig.mention("hi", channel="C2")
    await rig.reply_in("C2", ts)
    assert rig.model.requests[-1]["messages"][0]["content"] == "Answer like a pirate."
    ts = await rig.mention("hi", channel="C1", team="T2")
    await rig.reply_in("C1", ts)
    assert "pirate" not in rig.model.requests[-1]["messages"][0]["content"], "another workspace is untouched"


async def test_model_set_is_checked_against_the_servers_list(rig: SlackRig) -> None:
    refused = await rig.command("model set gpt-9-imaginary", user="UADMIN")
    assert "doesn't offer `gpt-9-imaginary`" in refused and "`gpt-4o`" in refused
    assert "to `gpt-4o`" in await rig.command("model set gpt-4o", user="UADMIN")
    ts = await rig.mention("which model?")
    await rig.reply_in("C1", ts)
    assert rig.model.requests[-1]["model"] == "gpt-4o"


async def test_over_the_daily_cap_the_model_is_not_called_and_the_reset_is_named(rig: SlackRig) -> None:
    await rig.command("limit user 2000", user="UADMIN")
    rig.model.answer_tokens = 100_000  # the first answer talks until its limit: all the allowance it may have
    ts = await rig.mention("first question")
    await rig.reply_in("C1", ts)
    ts = await rig.mention("second question")
    [refusal] = await rig.reply_in("C1", ts)
    assert "You've used your daily allowance of 2,000 tokens" in refusal.text and "midnight UTC" in refusal.text
    assert len(rig.model.requests) == 1


async def test_a_user_with_room_for_one_answer_gets_one_even_when_asking_ten_times_at_once(http_rig: SlackRig) -> None:
    await http_rig.command("limit user 100", user="UADMIN")
    http_rig.model.queue("the one answer", hold=True)
    threads = [next_ts() for _ in range(10)]
    from tests.fakes.slack import app_mention

    await asyncio.gather(*(http_rig.deliver(app_mention(f"C{n}", "U1", "<@UBOT> go", ts=ts)) for n, ts in enumerate(threads)))
    await http_rig.model.wait_for_requests(1)
    outcomes = await http_rig.wait_outcomes(9 + 1)  # the admin's command is not a turn outcome
    assert outcomes.count("turn:refused") == 9
    http_rig.model.release_held()
    await http_rig.wait_outcomes(10 + 1)
    assert len(http_rig.model.requests) == 1


async def test_the_rate_limit_refuses_the_request_over_the_limit(rig: SlackRig) -> None:
    await rig.command("limit rate 2", user="UADMIN")
    for _ in range(2):
        ts = await rig.mention("quick one")
        await rig.reply_in("C1", ts)
    ts = await rig.mention("one too many")
    [refusal] = await rig.reply_in("C1", ts)
    assert "2 per minute" in refusal.text and len(rig.model.requests) == 2


async def test_daily_caps_reset_at_utc_midnight(settings: Settings) -> None:
    now = [datetime(2026, 11, 25, 23, 50, tzinfo=timezone.utc)]
    async with slack_rig(settings, "http", clock=lambda: now[0]) as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        await rig.command("limit workspace 2000", user="UADMIN")
        rig.model.answer_tokens = 100_000
        await rig.reply_in("C1", await rig.mention("use it up"))
        [refusal] = await rig.reply_in("C1", await rig.mention("more"))
        assert "in 10 min" in refusal.text
        rig.model.answer_tokens = None
        now[0] += timedelta(minutes=11)
        [answer] = await rig.reply_in("C1", await rig.mention("new day"))
        assert answer.text == "echo: new day"


async def test_usage_report_shows_tokens_cost_top_users_feedback_and_own_allowance(rig: SlackRig) -> None:
    await rig.command("limit user 100000", user="UADMIN")
    ts = await rig.mention("hello")
    [answer] = await rig.reply_in("C1", ts)
    await rig.deliver(channel_message("C1", "UADMIN", "and me?", thread_ts=ts))  # a second user joins the thread
    await rig.reply_in("C1", ts, count=2)
    await rig.deliver(reaction_added("U1", "+1::skin-tone-3", "C1", answer.ts, "UBOT"))
    await rig.deliver(reaction_added("UADMIN", "-1", "C1", answer.ts, "UBOT"))
    await rig.deliver(reaction_added("UADMIN", "tada", "C1", answer.ts, "UBOT"))
    votes = [o for o in await rig.wait_outcomes(6) if o not in ("command", "turn:answered")]
    assert sorted(votes) == ["feedback", "feedback", "ignored"]

    rows = await rig.bot.engine.store.usage_rows("2000-01-01")
    tokens = {r["user_id"]: r["prompt_tokens"] + r["completion_tokens"] for r in rows}
    total = sum(tokens.values())
    cost = sum(PriceList().cost(r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in rows)
    report = await rig.command("usage", user="UADMIN")
    assert f"today: {total:,} tokens (~${cost:,.2f})" in report
    assert f"<@U1> {tokens['U1']:,}" in report and f"<@UADMIN> {tokens['UADMIN']:,}" in report
    assert "👍 1 · 👎 1 (50% positive)" in report
    own = await rig.command("usage", user="U1")
    assert f"You: {tokens['U1']:,} tokens today" in own and f"{100000 - tokens['U1']:,} more today" in own


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
async def test_bad_command_text_gets_a_usage_line_and_changes_nothing(http_rig: SlackRig, command: str, expected: str) -> None:
    before = settings_rows(http_rig)
    answer = await http_rig.command(command, user="UADMIN")
    assert expected in answer
    assert settings_rows(http_rig) == before and not await audit_rows(http_rig)


async def test_forget_erases_the_channels_history(http_rig: SlackRig) -> None:
    ts = await http_rig.mention("remember pineapple")
    await http_rig.reply_in("C1", ts)
    assert "Erased this channel's stored history (2 messages)" in await http_rig.command("forget", user="UADMIN")
    await http_rig.reply_in("C1", ts2 := await http_rig.mention("what fruit?"))
    assert "pineapple" not in str(http_rig.model.requests[-1]["messages"])
    assert ts2


async def test_settings_in_one_workspace_never_affect_another(http_rig: SlackRig) -> None:
    await http_rig.command("limit user 1", user="UADMIN", team="T1")
    await http_rig.reply_in("C1", await http_rig.mention("use it", team="T1"))
    ts = await http_rig.mention("other team", team="T2")
    [answer] = await http_rig.reply_in("C1", ts)
    assert answer.text == "echo: other team"


POLITE = "Answer politely and briefly. "  # 5 tokens


async def test_instructions_leaving_the_conversation_under_a_quarter_of_the_window_are_flagged(settings: Settings) -> None:
    async with slack_rig(replace(settings, context_tokens=2048), "http") as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        assert "Note:" not in await rig.command("instructions set " + POLITE * 100, user="UADMIN")
        answer = await rig.command("instructions set " + POLITE * 260, user="UADMIN")  # ~1,300 tokens of 2,048
        assert "Workspace instructions updated" in answer
        assert "window for the conversation, less than a quarter" in answer
        channel = await rig.command("instructions channel set " + POLITE * 20, user="UADMIN")  # the two add up
        assert "Channel instructions set" in channel and "less than a quarter" in channel


async def test_instructions_that_leave_no_room_for_the_conversation_are_refused(settings: Settings) -> None:
    async with slack_rig(replace(settings, context_tokens=1536), "http") as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        answer = await rig.command("instructions set " + POLITE * 260, user="UADMIN")
        assert "too little to answer anything" in answer and "Nothing was changed" in answer
        assert not await audit_rows(rig)
        await rig.command("instructions set " + POLITE * 150, user="UADMIN")
        assert "too little to answer anything" in await rig.command("instructions channel set " + POLITE * 150, user="UADMIN")
