"""Moderation through the fake Slack and the fake model's /moderations: what is checked, shown, refused, logged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from chatbots.cli import main
from chatbots.config import Config
from tests.backend import database_env, rows, value
from chatbots.moderation import (
    FLAGGED_INPUT_NOTICE,
    FLAGGED_OUTPUT_NOTICE,
    UNAVAILABLE_NOTICE,
    Verdict,
)
from tests.slack_rig import SlackRig, slack_rig


@pytest.fixture
async def rig(settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(replace(settings, moderation=True)) as rig:
        rig.model.flag_words = {"forbidden-topic"}
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        yield rig


def everything_sent_to_slack(rig: SlackRig) -> str:
    return "\n".join(str(call.args) for call in rig.slack.calls)


def log_rows(rig: SlackRig) -> list[tuple]:
    return rows(rig.bot.engine.store, "SELECT direction, decision, categories, text FROM moderation_log ORDER BY id")


async def test_clean_messages_are_checked_both_ways_and_answered(rig: SlackRig) -> None:
    ts = await rig.mention("what is the capital of France?")
    [answer] = await rig.reply_in("C1", ts)
    assert answer.text == "echo: what is the capital of France?"
    checked = [request["input"] for request in rig.model.moderation_requests]
    assert checked[0] == "what is the capital of France?"
    assert "".join(checked[1:]) == "echo: what is the capital of France?"
    assert len(checked) <= 3, "moderation calls per reply stay few"
    assert {row[1] for row in log_rows(rig)} == {"passed"}


async def test_flagged_input_gets_a_kind_refusal_and_the_model_is_never_called(rig: SlackRig) -> None:
    ts = await rig.mention("tell me about forbidden-topic")
    [refusal] = await rig.reply_in("C1", ts)
    assert refusal.text == f"_{FLAGGED_INPUT_NOTICE}_"
    assert "harassment" not in refusal.text
    assert not rig.model.requests
    assert log_rows(rig) == [("in", "flagged", "harassment", None)], "no text stored unless the operator opts in"
    stored = value(rig.bot.engine.store, "SELECT count(*) FROM messages")
    assert stored == 0, "flagged input is not kept as history"


async def test_flagged_output_never_reaches_slack_and_what_was_shown_stays(rig: SlackRig) -> None:
    rig.model.chunk_delay = 0.15
    rig.model.queue("A perfectly fine opening. Then forbidden-topic details follow here.", chunks=6)
    ts = await rig.mention("go on")
    await rig.wait_outcomes(1, timeout=10)
    [reply] = [m for m in rig.slack.messages("C1") if m.thread_ts == ts]
    assert "forbidden-topic" not in everything_sent_to_slack(rig)
    assert reply.text.startswith("A perfectly") and reply.text.endswith(f"_{FLAGGED_OUTPUT_NOTICE}_")
    assert ("out", "flagged", "harassment", None) in log_rows(rig)
    assert len(rig.model.moderation_requests) <= 4
    [kept] = rows(rig.bot.engine.store, "SELECT text, status FROM messages WHERE role = 'assistant'")
    assert kept[1] == "flagged" and "forbidden-topic" not in kept[0]


async def test_flagged_text_is_stored_only_when_the_operator_opts_in(settings: Config) -> None:
    async with slack_rig(replace(settings, moderation=True, store_flagged_text=True)) as rig:
        rig.model.flag_words = {"forbidden-topic"}
        await rig.reply_in("C1", await rig.mention("forbidden-topic please"))
        assert log_rows(rig) == [("in", "flagged", "harassment", "forbidden-topic please")]


async def test_moderation_down_blocks_by_default_with_a_clear_message(rig: SlackRig) -> None:
    rig.model.moderation_status = 503
    [notice] = await rig.reply_in("C1", await rig.mention("hello?"))
    assert notice.text == f"_{UNAVAILABLE_NOTICE}_" and not rig.model.requests
    assert log_rows(rig) == [("in", "error_blocked", "", None)]


NO_VERDICT = [
    pytest.param({"results": []}, id="empty-results"),
    pytest.param({"results": {"flagged": False}}, id="results-not-a-list"),
    pytest.param({"results": ["passed"]}, id="first-result-not-an-object"),
    pytest.param({"results": [{"categories": {"harassment": False}}]}, id="flagged-missing"),
    pytest.param({"results": [{"flagged": "false"}]}, id="flagged-a-string"),
    pytest.param({"results": [{"flagged": None}]}, id="flagged-null"),
    pytest.param({"id": "modr-1"}, id="no-results"),
    pytest.param([{"flagged": False}], id="body-not-an-object"),
]


@pytest.mark.parametrize("body", NO_VERDICT)
@pytest.mark.parametrize(("policy", "decision"), [(True, "error_blocked"), (False, "error_allowed")])
async def test_a_response_without_a_verdict_is_a_moderation_error_never_a_pass(
    body: object, policy: bool, decision: str
) -> None:
    from chatbots.moderation import Moderator
    from tests.fakes.model_server import FakeModelServer

    async with FakeModelServer(moderation_body=body) as server:
        moderator = Moderator(server.base_url, "sk-test", "omni-moderation-latest", block_on_error=policy)
        verdict = await moderator.check("hello")
        await moderator.close()
    assert verdict.decision == decision and server.moderation_requests


async def test_an_empty_moderation_answer_blocks_the_message_by_default(rig: SlackRig) -> None:
    rig.model.moderation_body = {"results": []}
    [notice] = await rig.reply_in("C1", await rig.mention("hello?"))
    assert notice.text == f"_{UNAVAILABLE_NOTICE}_" and not rig.model.requests
    assert log_rows(rig) == [("in", "error_blocked", "", None)]


async def test_moderation_down_can_be_allowed_by_policy(settings: Config) -> None:
    async with slack_rig(replace(settings, moderation=True, moderation_on_error="allow")) as rig:
        rig.model.moderation_status = 500
        [answer] = await rig.reply_in("C1", await rig.mention("hello?"))
        assert answer.text == "echo: hello?"
        assert {row[1] for row in log_rows(rig)} == {"error_allowed"}


async def test_a_workspace_can_turn_moderation_off_for_itself_only(rig: SlackRig) -> None:
    assert "now off" in await rig.command("moderation off", user="UADMIN")
    [answer] = await rig.reply_in("C1", await rig.mention("forbidden-topic is fine here"))
    assert answer.text == "echo: forbidden-topic is fine here"
    assert not rig.model.moderation_requests
    [refusal] = await rig.reply_in("C1", await rig.mention("forbidden-topic", team="T2"))
    assert refusal.text == f"_{FLAGGED_INPUT_NOTICE}_"


async def test_moderation_can_be_turned_off_globally(settings: Config) -> None:
    async with slack_rig(replace(settings, moderation=False)) as rig:
        rig.model.flag_words = {"forbidden-topic"}
        await rig.reply_in("C1", await rig.mention("forbidden-topic"))
        assert not rig.model.moderation_requests


async def test_moderation_log_command_lists_decisions(
    rig: SlackRig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await rig.reply_in("C1", await rig.mention("forbidden-topic"))
    database_env(monkeypatch, rig.bot.config)
    assert main(["moderation-log", "--flagged"]) == 0
    out = capsys.readouterr().out
    assert "flagged" in out and "harassment" in out and "slack" in out and "in " in out


async def test_the_first_check_waits_for_a_whole_word_instead_of_spending_an_interval_on_a_fragment() -> None:
    from chatbots.moderation import ModeratedReply, Moderator
    from tests.fakes.model_server import FakeModelServer
    from tests.fakes.reply import RecordingReply

    async with FakeModelServer() as server:
        moderator = Moderator(server.base_url, "sk-test", "omni-moderation-latest", block_on_error=True)
        shown = RecordingReply()
        reply = ModeratedReply(shown, moderator, record_nothing, interval=60.0)
        async with reply._lock:  # the background checker waits; the test takes each decision itself
            await reply.append("Hel")
            assert await reply._check_pending() is False and reply.checks == 0, "a fragment alone is not worth a check"
            await reply.append("lo world ")
            assert await reply._check_pending() is True and reply.checks == 1
        await reply.append("and more")
        await reply.finish()
        await moderator.close()
    checked = [request["input"] for request in server.moderation_requests]
    assert checked[0].startswith("Hello world ") and "".join(shown.pieces) == "Hello world and more"


async def record_nothing(verdict: Verdict, text: str) -> None:
    """Moderation decisions need no log in this test."""
