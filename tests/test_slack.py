"""Slack, end to end: real slack_bolt/slack_sdk against the fake Slack, over HTTP and Socket Mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.runner import Bot
from chatbots.config import Config
from tests.backend import value
from tests.fakes.slack import (
    FakeSlack,
    app_mention,
    bot_message,
    channel_message,
    dm_message,
    event_callback,
    message_changed,
    message_deleted,
    next_ts,
    post_signed,
    sign_request,
)
from tests.slack_rig import SECRET, SlackRig, slack_rig


@pytest.fixture(params=["http", "socket"])
async def rig(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, request.param) as rig:
        yield rig


@pytest.fixture
async def http_rig(settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(settings, "http") as rig:
        yield rig


async def test_a_top_level_mention_is_answered_in_a_new_thread_with_streaming(rig: SlackRig) -> None:
    rig.model.queue("echo: hello there", hold=True)  # a model slow to start: the thinking status shows meanwhile
    ts = await rig.mention("hello there")
    await rig.slack.wait_for_call("assistant.threads.setStatus")
    rig.model.release_held()
    [answer] = await rig.reply_in("C1", ts)
    assert answer.text == "echo: hello there"
    assert answer.streamed, "the workspace supports native streaming, so the reply streams"
    status = rig.slack.calls_to("assistant.threads.setStatus")[0]
    assert status.args["thread_ts"] == ts and status.t < rig.slack.calls_to("chat.startStream")[0].t
    start = rig.slack.calls_to("chat.startStream")[0].args
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U1", "T1")


async def test_an_answer_that_starts_at_once_needs_no_thinking_status(rig: SlackRig) -> None:
    [answer] = await rig.reply_in("C1", await rig.mention("quick"))
    assert answer.text == "echo: quick"
    assert not rig.slack.calls_to("assistant.threads.setStatus")
    assert [c.method for c in rig.slack.calls if c.method.startswith("chat.")] == ["chat.startStream", "chat.stopStream"]


async def test_follow_ups_in_the_bots_thread_continue_the_conversation(rig: SlackRig) -> None:
    ts = await rig.mention("my name is Ada")
    await rig.reply_in("C1", ts)
    await rig.deliver(channel_message("C1", "U1", "what is my name?", thread_ts=ts))
    replies = await rig.reply_in("C1", ts, count=2)
    assert replies[-1].text == "echo: what is my name?"
    contents = [m["content"] for m in rig.model.requests[-1]["messages"]]
    assert "my name is Ada" in contents and "echo: my name is Ada" in contents


async def test_thread_talk_to_someone_else_is_context_not_a_question(rig: SlackRig) -> None:
    rig.slack.add_user("U1", name="ada")
    rig.slack.add_user("U2", name="grace")
    ts = await rig.mention("plan the release")
    await rig.reply_in("C1", ts)
    await rig.deliver(channel_message("C1", "U2", "<@U1> I can do Friday", thread_ts=ts))
    assert (await rig.wait_outcomes(2))[1] == "turn:stored"
    assert len(rig.model.requests) == 1

    await rig.mention("what did grace offer?", thread_ts=ts)
    await rig.reply_in("C1", ts, count=2)
    users = [m["content"] for m in rig.model.requests[-1]["messages"] if m["role"] == "user"]
    assert users[-2:] == ["grace: <@U1> I can do Friday", "ada: what did grace offer?"]


async def test_direct_messages_are_answered_in_a_thread(rig: SlackRig) -> None:
    ts = next_ts()
    await rig.deliver(dm_message("D1", "U1", "hi in private", ts=ts))
    [answer] = await rig.reply_in("D1", ts)
    assert answer.text == "echo: hi in private"


async def test_channel_chatter_and_unknown_threads_are_neither_answered_nor_stored(rig: SlackRig) -> None:
    await rig.deliver(channel_message("C1", "U1", "top-level chatter"))
    await rig.deliver(channel_message("C1", "U1", "a reply in someone else's thread", thread_ts=next_ts()))
    assert await rig.wait_outcomes(2) == ["ignored", "not_ours"]
    assert not rig.model.requests
    assert value(rig.bot.engine.store, "SELECT count(*) FROM messages") == 0


async def test_bots_edits_deletions_and_odd_subtypes_are_ignored_without_crashing(rig: SlackRig) -> None:
    ts = await rig.mention("start")
    await rig.reply_in("C1", ts)
    noise = [
        bot_message("C1", "<@UBOT> my own echo", thread_ts=ts),
        bot_message("C1", "<@UBOT> another bot", bot_id="BOTHER", user="UOTHER", thread_ts=ts),
        message_changed("C1", ts, "edited text", user="U1", thread_ts=ts),
        message_deleted("C1", ts, thread_ts=ts),
        {"type": "message", "subtype": "channel_join", "channel": "C1", "user": "U9", "ts": next_ts()},
        {"type": "message", "channel": "C1"},  # malformed: no ts, no user
        {"type": "message", "subtype": "huddle_thread", "channel": "C1", "ts": next_ts(), "thread_ts": ts},
    ]
    for event in noise:
        await rig.deliver(event)
    outcomes = await rig.wait_outcomes(1 + len(noise), timeout=2)
    assert sorted(outcomes) == ["ignored"] * len(noise) + ["turn:answered"], "the turn's outcome may land after its reply"
    assert len(rig.model.requests) == 1

    await rig.deliver(channel_message("C1", "U1", "still there?", thread_ts=ts))
    assert (await rig.reply_in("C1", ts, count=2))[-1].text == "echo: still there?"


async def test_a_mention_midway_through_a_thread_reads_it_once(rig: SlackRig) -> None:
    rig.slack.add_user("U2", name="grace")
    root = next_ts()
    rig.slack.seed_thread("C1", root, [
        {"user": "U2", "text": "the build is red again", "ts": root},
        {"user": "U3", "text": "flaky test in payments", "ts": next_ts()},
    ])
    await rig.mention("what is going on here?", thread_ts=root)
    await rig.reply_in("C1", root)
    users = [m["content"] for m in rig.model.requests[0]["messages"] if m["role"] == "user"]
    assert users[:2] == ["grace: the build is red again", "U3: flaky test in payments"]

    await rig.mention("and who said it?", thread_ts=root)
    await rig.reply_in("C1", root, count=2)
    assert len(rig.slack.calls_to("conversations.replies")) == 1, "history comes from our store after the first read"


async def test_redelivered_events_are_answered_once(rig: SlackRig) -> None:
    ts = next_ts()
    event = app_mention("C1", "U1", "<@UBOT> once please", ts=ts)
    first = await rig.deliver(event)
    await rig.deliver(event, event_id=first["event_id"], retry=1)
    await rig.deliver(channel_message("C1", "U1", "<@UBOT> once please", ts=ts), event_id=None)  # same ts, other event
    await rig.wait_outcomes(3)
    await rig.reply_in("C1", ts)
    assert len(rig.model.requests) == 1
    assert len(rig.slack.calls_to("chat.startStream")) == 1


async def test_a_redelivery_after_a_restart_is_still_answered_once(settings: Config, tmp_path: Path) -> None:
    ts = next_ts()
    async with slack_rig(settings, "http") as rig:
        body = await rig.deliver(app_mention("C1", "U1", "<@UBOT> hi", ts=ts))
        await rig.reply_in("C1", ts)
    async with slack_rig(settings, "http") as again:  # same database file
        await again.deliver(body["event"], event_id=body["event_id"], retry=2)
        assert await again.wait_outcomes(1) == ["duplicate"]
        assert not again.model.requests


async def test_mrkdwn_and_long_answers_when_streaming_is_not_available(settings: Config) -> None:
    async with slack_rig(settings, "http", streaming_supported=False) as rig:
        long_answer = "## Plan\n\nUse **bold** and [docs](https://example.com/docs).\n\n" + "\n\n".join(
            f"Paragraph {n}: " + "words that fill the message " * 12 for n in range(40)
        )
        rig.model.queue(long_answer, chunks=40)
        ts = await rig.mention("write a lot")
        replies = await rig.wait_for_text(ts, "Paragraph 39")
        assert len(replies) >= 4 and all(len(m.text) <= 4000 for m in replies)
        assert replies[0].text.startswith("*Plan*\n\nUse *bold* and docs (<https://example.com/docs>).")  # the target shows
        shown = "\n\n".join(m.text for m in replies)
        for n in range(40):
            assert f"Paragraph {n}: " in shown, "nothing is cut off"
        assert not rig.slack.calls_to("chat.appendStream")


async def test_a_model_failure_ends_as_a_short_message_in_the_thread(rig: SlackRig) -> None:
    for _ in range(4):
        rig.model.queue(status=500)
    ts = await rig.mention("are you ok?")
    [answer] = await rig.reply_in("C1", ts)
    assert "model server had a problem" in answer.text
    assert "Traceback" not in answer.text and "500" not in answer.text


async def test_forged_unsigned_and_stale_requests_get_401_and_never_reach_the_model(http_rig: SlackRig) -> None:
    body = event_callback("T1", app_mention("C1", "U1", "<@UBOT> sneaky"))
    status, _ = await post_signed(None, http_rig.events_url, body, "wrong-secret")
    assert status == 401
    stale, _ = await post_signed(None, http_rig.events_url, body, SECRET, timestamp=1_600_000_000)
    assert stale == 401
    async with aiohttp.ClientSession() as session:
        async with session.post(http_rig.events_url, json=body) as response:
            assert response.status == 401
        raw = b'{"type": "event_callback", "event": '
        async with session.post(http_rig.events_url, data=raw, headers=sign_request(SECRET, raw)) as response:
            assert 400 <= response.status < 500
    assert not http_rig.model.requests


async def test_the_event_is_acknowledged_before_the_model_answers(http_rig: SlackRig) -> None:
    http_rig.model.queue("slow answer", hold=True)
    ts = next_ts()
    await http_rig.deliver(app_mention("C1", "U1", "<@UBOT> take your time", ts=ts))  # asserts 200
    await http_rig.model.wait_for_requests(1)
    assert not http_rig.slack.messages("C1"), "acked while the model was still thinking"
    http_rig.model.release_held()
    [answer] = await http_rig.reply_in("C1", ts)
    assert answer.text == "slow answer"


async def test_slack_rate_limits_are_waited_out_and_the_reply_lands(rig: SlackRig) -> None:
    rig.slack.fail_next("chat.startStream", status=429, retry_after=0)
    rig.slack.fail_next("chat.stopStream", status=429, retry_after=0)
    ts = await rig.mention("busy day")
    [answer] = await rig.reply_in("C1", ts)
    assert answer.text == "echo: busy day"
    assert [c.status for c in rig.slack.calls_to("chat.startStream")] == [429, 200]


async def test_a_failed_final_update_posts_the_answer_instead_of_losing_it(settings: Config) -> None:
    async with slack_rig(settings, "http", streaming_supported=False) as rig:
        rig.slack.fail_next("chat.update", error="cant_update_message", times=5)
        rig.model.queue("first part, then the rest of the answer", chunks=4)
        ts = await rig.mention("go")
        await rig.wait_outcomes(1)
        shown = [m.text for m in rig.slack.messages("C1") if m.thread_ts == ts]
        assert shown[-1] == "first part, then the rest of the answer"


async def test_workspaces_with_the_same_channel_ids_never_share_history(rig: SlackRig) -> None:
    ts1 = await rig.mention("team one secret", team="T1")
    await rig.reply_in("C1", ts1)
    ts2 = await rig.mention("hello from team two", team="T2")
    await rig.reply_in("C1", ts2)
    assert "team one secret" not in str(rig.model.requests[-1]["messages"])


async def test_health_endpoint(http_rig: SlackRig) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{http_rig.bot.port}/healthz") as response:
            assert response.status == 200 and (await response.json())["platforms"] == ["slack"]


def test_http_mode_needs_the_signing_secret(settings: Config) -> None:
    from dataclasses import replace

    from chatbots.config import ConfigError

    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        Bot(replace(settings, slack_bot_token="xoxb-1", slack_signing_secret=None))


async def test_a_refused_bot_token_is_a_clear_start_up_error(settings: Config) -> None:
    from chatbots.config import ConfigError

    async with FakeSlack() as slack:
        slack.revoke_token("xoxb-test-token", error="invalid_auth")
        from dataclasses import replace

        bot = Bot(replace(settings, slack_bot_token="xoxb-test-token", slack_signing_secret=SECRET, slack_api_url=slack.api_url, port=0))
        with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN was refused by Slack \\(invalid_auth\\)"):
            await bot.start(host="127.0.0.1")
        await bot.stop(grace=0)
