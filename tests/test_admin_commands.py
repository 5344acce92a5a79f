"""`/chatbot` on Slack, over HTTP and Socket Mode: who counts as an admin there, the private answer, a change end to end.

The permission and grammar matrix runs against the core `Commands` in test_commands.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatbots.config import Config
from chatbots.pricing import PriceList
from tests.backend import rows
from tests.fakes.slack import app_mention, channel_message, next_ts, reaction_added
from tests.slack_rig import SlackRig, slack_rig


@pytest.fixture(params=["http", "socket"])
async def rig(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param) as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.slack.add_user("UOWNER", name="founder", is_owner=True)
        rig.slack.add_user("U1", name="ada")
        yield rig


@pytest.fixture
async def http_rig(settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, "http") as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.slack.add_user("U1", name="ada")
        yield rig


async def audit_rows(rig: SlackRig) -> list[dict]:
    return await rig.bot.engine.store.audit_log()


def settings_rows(rig: SlackRig) -> list[tuple]:
    return rows(rig.bot.engine.store, "SELECT workspace_id, channel, name, value FROM settings ORDER BY 1, 2, 3")


async def test_slack_admins_and_owners_change_settings_members_are_refused_and_the_change_reaches_the_model(
    rig: SlackRig,
) -> None:
    answer = await rig.command("instructions set Answer like a pirate.", user="U1")
    assert "Only" in answer and "admin" in answer, "a member is not a workspace admin"
    assert not settings_rows(rig) and not await audit_rows(rig)
    assert "updated" in await rig.command("instructions set Answer like a pirate.", user="UADMIN")
    assert "Daily tokens per person: 5,000" in await rig.command("limit user 5000", user="UOWNER")
    rows = await audit_rows(rig)
    assert [(r["actor_id"], r["workspace"]) for r in rows] == [("UOWNER", "T1"), ("UADMIN", "T1")]
    await rig.reply_in("C1", await rig.mention("hi"))
    assert rig.model.requests[-1]["messages"][0]["content"] == "Answer like a pirate."


async def test_a_user_with_room_for_one_answer_gets_one_even_when_asking_ten_times_at_once(http_rig: SlackRig) -> None:
    await http_rig.command("limit user 100", user="UADMIN")
    http_rig.model.queue("the one answer", hold=True)
    threads = [next_ts() for _ in range(10)]
    await asyncio.gather(*(http_rig.deliver(app_mention(f"C{n}", "U1", "<@UBOT> go", ts=ts)) for n, ts in enumerate(threads)))
    await http_rig.model.wait_for_requests(1)
    outcomes = await http_rig.wait_outcomes(9 + 1)  # the admin's command is not a turn outcome
    assert outcomes.count("turn:refused") == 9
    http_rig.model.release_held()
    await http_rig.wait_outcomes(10 + 1)
    assert len(http_rig.model.requests) == 1


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
