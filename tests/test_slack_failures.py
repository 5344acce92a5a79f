"""Slack API errors name what fixes them, once in the log; a response missing what the next call needs is a failure."""

from __future__ import annotations

import logging

import pytest

from adapters.slack.service import BACKFILL_REFUSED_NOTE
from chatbots.config import Config
from tests.fakes.slack import next_ts
from tests.slack_rig import slack_rig


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("adapters.slack")]


def failures_counted(rig: object, kind: str) -> float:
    exposition = rig.bot.engine.metrics.exposition().decode()  # type: ignore[attr-defined]
    for line in exposition.splitlines():
        if line.startswith("chatbots_failures_total{") and f'kind="{kind}"' in line and 'source="slack"' in line:
            return float(line.rpartition(" ")[2])
    return 0.0


async def test_a_stream_started_without_a_ts_falls_back_to_posting(settings: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with slack_rig(settings, "http") as rig:
        rig.slack.answer_without("chat.startStream", "ts")
        ts = await rig.mention("hello there")
        assert "turn:answered" in await rig.wait_outcomes(1)
        [posted] = [m for m in rig.slack.thread("C1", ts) if m.is_bot and not m.streamed]
        assert posted.text == "echo: hello there"
        assert warnings(caplog) == ["slack chat.startStream answered ok without ts"]
        assert failures_counted(rig, "incomplete_response") == 1

        second = await rig.mention("and again")  # the workspace is remembered: no second stream into nothing
        await rig.wait_for_text(second, "echo: and again")
        assert len(rig.slack.calls_to("chat.startStream")) == 1


async def test_a_post_answered_without_a_ts_is_logged_and_counted_as_a_failure(settings: Config,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with slack_rig(settings, "http", streaming_supported=False) as rig:
        rig.slack.answer_without("chat.postMessage", "ts")
        await rig.mention("hello there")
        await rig.wait_outcomes(1)
        assert "slack chat.postMessage answered ok without ts" in warnings(caplog)
        assert failures_counted(rig, "incomplete_response") >= 1


async def test_a_missing_scope_is_named_in_the_log_and_noted_in_the_thread(settings: Config,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with slack_rig(settings, "http") as rig:
        root = next_ts()
        rig.slack.seed_thread("C1", root, [{"user": "U2", "text": "earlier words", "ts": root}])
        rig.slack.fail_next("conversations.replies", error="missing_scope", needed="channels:history",
                            provided="chat:write,app_mentions:read")
        await rig.mention("what was said?", thread_ts=root)
        await rig.wait_for_text(root, "echo: what was said?")
        assert any(m.text == f"_{BACKFILL_REFUSED_NOTE}_" for m in rig.slack.thread("C1", root))
        [line] = warnings(caplog)
        assert line.startswith("slack conversations.replies failed: missing_scope; the app lacks the channels:history scope")
        assert "reinstall" in line
        assert failures_counted(rig, "missing_scope") == 1


async def test_not_in_channel_says_to_invite_the_bot_once(settings: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with slack_rig(settings, "http", streaming_supported=False) as rig:
        rig.slack.fail_next("chat.postMessage", error="not_in_channel", times=4)
        await rig.mention("one", channel="C9")
        await rig.mention("two", channel="C9")
        await rig.wait_outcomes(2)
        lines = [line for line in warnings(caplog) if "not_in_channel" in line]
        assert lines == ["slack chat.postMessage failed: not_in_channel; the bot is not a member of channel C9: "
                         "invite it there (/invite @the-bot)"]
        assert failures_counted(rig, "not_in_channel") >= 2
