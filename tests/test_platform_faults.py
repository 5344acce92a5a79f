"""Slack and Discord misbehaving mid-reply: rate limits, server errors, dropped connections. No reply lost or doubled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatbots.config import Config
from tests.discord_rig import GENERAL, RANDOM, discord_rig
from tests.fakes.slack import app_mention, next_ts
from tests.slack_rig import SlackRig, slack_rig

STREAMED = "one two three four five six seven eight nine ten"


@pytest.fixture(params=["http", "socket"])
async def slack_update_rig(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param, streaming_supported=False) as rig:
        rig.service.update_interval = 0.05
        yield rig


async def test_slack_5xx_and_429_on_post_and_update_are_retried_and_nothing_doubles(slack_update_rig: SlackRig) -> None:
    rig = slack_update_rig
    rig.model.chunk_delay = 0.03
    rig.model.queue(STREAMED, chunks=10)
    rig.slack.fail_next("chat.postMessage", status=503)
    rig.slack.fail_next("chat.update", status=429, retry_after=0)
    rig.slack.fail_next("chat.update", status=500)
    ts = await rig.mention("go")
    await rig.wait_outcomes(1)
    [reply] = [m for m in rig.slack.messages("C1") if m.thread_ts == ts]
    assert reply.text == STREAMED
    statuses = [c.status for c in rig.slack.calls_to("chat.postMessage")]
    assert statuses == [503, 200], "the failed post was retried once, and only one message exists"


async def test_slack_rate_limit_on_append_stream_is_waited_out(settings: Config) -> None:
    async with slack_rig(settings, "http") as rig:
        rig.service.update_interval = 0.05
        rig.model.chunk_delay = 0.03
        rig.model.queue(STREAMED, chunks=10)
        rig.slack.fail_next("chat.appendStream", status=429, retry_after=0)
        rig.slack.fail_next("chat.appendStream", status=502)
        ts = await rig.mention("go")
        [reply] = await rig.reply_in("C1", ts)
        assert reply.text == STREAMED
        assert 429 in [c.status for c in rig.slack.calls_to("chat.appendStream")]


async def test_a_streamed_answer_longer_than_one_message_continues_in_the_next(settings: Config) -> None:
    answer = "\n\n".join(f"Section {n}. " + "some words in a sentence " * 40 for n in range(30))
    answer += "\n\n```python\n" + "print('code')\n" * 200 + "```\n\nDone."
    async with slack_rig(settings, "http") as rig:
        rig.model.queue(answer, chunks=60)
        ts = await rig.mention("write a book")
        await rig.wait_outcomes(1)
        streamed = [m for m in rig.slack.messages("C1") if m.thread_ts == ts]
        assert len(streamed) >= 3 and all(m.stream_state == "completed" for m in streamed)
        assert all(len(m.text) <= 12_000 for m in streamed)
        assert all(m.text.count("```") % 2 == 0 for m in streamed), "code blocks closed and reopened"
        joined = "".join(m.text for m in streamed)
        for n in range(30):
            assert f"Section {n}. " in joined
        assert joined.rstrip().endswith("Done.")


async def test_a_socket_mode_reconnect_loses_no_event(settings: Config) -> None:
    async with slack_rig(settings, "socket") as rig:
        await rig.slack.socket_disconnect("refresh_requested")
        await rig.slack.wait_for(lambda: rig.slack.socket_connects >= 2, message="a new Socket Mode connection")
        ts = next_ts()
        await rig.deliver(app_mention("C1", "U1", "<@UBOT> after the refresh", ts=ts))
        [reply] = await rig.reply_in("C1", ts)
        assert reply.text == "echo: after the refresh"


async def test_discord_global_rate_limit_on_posting_is_waited_out(settings: Config) -> None:
    async with discord_rig(settings) as rig:
        rule = rig.fake.fail_next("POST", f"/channels/{GENERAL}/messages", status=429, retry_after=0.05, global_=True)
        contents = await rig.ask("busy?")
        assert contents == ["echo: busy?"] and rule.hits == 1


async def test_discord_gateway_drop_midway_through_a_reply_loses_and_doubles_nothing(settings: Config) -> None:
    async with discord_rig(settings, update_interval=0.05) as rig:
        rig.model.chunk_delay = 0.05
        rig.model.queue(STREAMED, chunks=10)
        first = await rig.mention("long one")
        await rig.fake.wait_for_call("POST", f"/channels/{GENERAL}/messages")
        async with rig.fake.gateway_offline():
            missed = await rig.mention("while offline", channel=RANDOM)
        outcomes = await rig.wait_outcomes(2)
        assert outcomes == ["turn:answered", "turn:answered"]
        assert [m["content"] for m in rig.replies_to(first["id"])] == [STREAMED]
        assert [m["content"] for m in rig.replies_to(missed["id"])] == ["echo: while offline"]
