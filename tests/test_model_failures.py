"""A misconfigured or refusing model server: the person learns what helps, the operator learns what failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import pytest

from chatbots.config import Config
from chatbots.engine import TRUNCATION_MARK, Engine
from chatbots.failures import (
    CONTEXT_NOTICE,
    FLAGGED_INPUT_NOTICE,
    FLAGGED_OUTPUT_NOTICE,
    KEY_REFUSED_NOTICE,
    QUOTA_NOTICE,
)
from chatbots.moderation import Moderator
from chatbots.types import ConversationKey, Inbound
from tests.backend import rows
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.test_failure_kinds import LITELLM_BAD_MODEL, LITELLM_CONTEXT

KEY = ConversationKey("test", "T1", "C1", "t1")
WRONG_KEY = {"error": {"message": "Incorrect API key provided: sk-test.", "type": "invalid_request_error",
                       "param": None, "code": "invalid_api_key"}}
QUOTA = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota", "param": None,
                   "code": "insufficient_quota"}}
CONTEXT = {"error": {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
                     "param": "messages", "code": "context_length_exceeded"}}
FILTERED = {"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                 "management policy.", "type": None, "param": "prompt", "code": "content_filter"}}


def said(text: str, n: int) -> Inbound:
    return Inbound(KEY, f"m{n}", "U1", "Ada", text)


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "call failed" in r.getMessage()]


async def test_a_refused_key_is_told_as_such_and_logged_with_status_type_and_code(
    engine: Engine, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    model_server.queue(status=401, error=WRONG_KEY)
    reply = RecordingReply()
    assert (await engine.handle(said("hello", 1), reply)).status == "failed"
    assert reply.notice == KEY_REFUSED_NOTICE
    assert len(model_server.requests) == 1, "a refused key is not retried"
    assert failure_lines(caplog) == [
        "model call failed: key_refused (status 401, type invalid_request_error, code invalid_api_key); model gpt-4o-mini"]
    assert "Incorrect API key" not in caplog.text and "sk-test" not in caplog.text and "hello" not in caplog.text


async def test_a_model_the_server_does_not_serve_is_named_with_the_command_that_changes_it(
    engine: Engine, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await engine.store.set_setting(await engine.store.workspace_id(KEY.platform, KEY.workspace), "model", "nope")
    model_server.queue(status=400, error=LITELLM_BAD_MODEL)
    reply = RecordingReply()
    await engine.handle(said("hello", 1), reply)
    assert reply.notice is not None and "`nope`" in reply.notice and "`/chatbot model`" in reply.notice
    assert failure_lines(caplog) == [
        "model call failed: model_unknown (status 400, type invalid_request_error, code 400); model nope"]


async def test_a_channel_model_or_fallback_model_not_served_names_the_command_that_chose_it(
    engine: Engine, model_server: FakeModelServer
) -> None:
    workspace = await engine.store.workspace_id(KEY.platform, KEY.workspace)
    await engine.store.set_setting(workspace, "model", "nope", channel=KEY.channel)
    model_server.queue(status=404, error={"message": "The model `nope` does not exist", "code": "model_not_found"})
    reply = RecordingReply()
    await engine.handle(said("hello", 1), reply)
    assert reply.notice is not None and "`nope`" in reply.notice and "`/chatbot model channel`" in reply.notice

    await engine.store.set_setting(workspace, "model", None, channel=KEY.channel)
    await engine.store.set_setting(workspace, "budget_user_day", "0.000001")  # used up by any priced request
    await engine.store.set_setting(workspace, "fallback_model", "gone")
    model_server.queue(status=404, error={"message": "The model `gone` does not exist", "code": "model_not_found"})
    reply = RecordingReply()
    await engine.handle(said("hello again", 2), reply)
    assert model_server.requests[-1]["model"] == "gone"
    assert reply.notice is not None and "`gone`" in reply.notice and "`/chatbot fallback`" in reply.notice


async def test_an_exhausted_quota_is_not_retried_unlike_a_rate_limit(
    engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.queue(status=429, retry_after=0.01, error=QUOTA)
    reply = RecordingReply()
    assert (await engine.handle(said("hello", 1), reply)).status == "failed"
    assert reply.notice == QUOTA_NOTICE and len(model_server.requests) == 1


async def test_a_prompt_too_long_for_the_server_is_sent_again_shorter_once(
    engine: Engine, model_server: FakeModelServer
) -> None:
    for n in range(1, 5):
        await engine.handle(said(f"question {n}", n), RecordingReply())
    model_server.queue(status=400, error=CONTEXT)
    reply = RecordingReply()
    assert (await engine.handle(said("question 5", 5), reply)).status == "answered"
    full, shorter = model_server.requests[-2:]
    assert len(shorter["messages"]) < len(full["messages"])
    assert shorter["messages"][-1] == full["messages"][-1], "the question itself is kept"
    assert reply.text == "echo: question 5"


async def test_a_prompt_still_too_long_after_trimming_ends_with_advice(
    engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.queue(status=400, error=LITELLM_CONTEXT)
    model_server.queue(status=400, error=LITELLM_CONTEXT)
    reply = RecordingReply()
    assert (await engine.handle(said("a long question " * 20, 1), reply)).status == "failed"
    assert reply.notice == CONTEXT_NOTICE and len(model_server.requests) == 2
    first, second = (request["messages"][-1]["content"] for request in model_server.requests)
    assert second.endswith(TRUNCATION_MARK) and first.startswith(second.removesuffix(TRUNCATION_MARK))
    assert len(second) - len(TRUNCATION_MARK) < len(first), "a lone message is cut rather than sent again whole"


async def test_a_content_filter_refusal_reads_like_moderation(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue(status=400, error=FILTERED)
    reply = RecordingReply()
    assert (await engine.handle(said("something", 1), reply)).status == "flagged"
    assert reply.notice == FLAGGED_INPUT_NOTICE and len(model_server.requests) == 1


async def test_an_answer_stopped_by_a_content_filter_keeps_what_showed(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue("The first part ", chunks=2, finish="content_filter")
    reply = RecordingReply()
    result = await engine.handle(said("something", 1), reply)
    assert result.status == "flagged" and reply.text == "The first part " and reply.notice == FLAGGED_OUTPUT_NOTICE
    assert rows(engine.store, "SELECT text, status FROM messages WHERE role = 'assistant'") == [("The first part ", "flagged")]


async def test_the_same_failure_on_every_message_is_logged_once_and_counted_each_time(
    make_engine: Callable[..., Engine], model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine = make_engine()
    for n in range(3):
        model_server.queue(status=401, error=WRONG_KEY)
        await engine.handle(said(f"try {n}", n), RecordingReply())
    assert len(failure_lines(caplog)) == 1
    exposition = engine.metrics.exposition().decode()
    assert 'chatbots_failures_total{kind="key_refused",source="model"} 3.0' in exposition


async def test_a_moderation_server_error_is_logged_as_what_it_said(
    model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    model_server.moderation_status = 500
    model_server.moderation_body = {"error": {"message": "Missing credentials. Please pass an `api_key`.",
                                              "type": "None", "param": "None", "code": "500"}}
    moderator = Moderator(model_server.base_url, "sk-test", "omni-moderation-latest", block_on_error=True)
    try:
        verdict = await moderator.check("hello")
    finally:
        await moderator.close()
    assert verdict.blocked
    assert failure_lines(caplog) == ["moderation call failed: server_error (status 500, code 500); blocking"]


async def test_a_server_without_moderations_is_told_apart(
    settings: Config, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    model_server.moderation_status = 404
    moderator = Moderator.from_settings(replace(settings, moderation=True))
    assert moderator is not None
    try:
        await moderator.check("hello")
    finally:
        await moderator.close()
    assert failure_lines(caplog) == ["moderation call failed: no_endpoint (status 404); blocking"]


async def test_a_moderation_answer_without_a_verdict_is_logged_as_malformed(
    model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    model_server.moderation_body = {"results": []}
    moderator = Moderator(model_server.base_url, "sk-test", "omni-moderation-latest", block_on_error=False)
    try:
        assert not (await moderator.check("hello")).blocked
    finally:
        await moderator.close()
    assert failure_lines(caplog) == [
        "moderation call failed: malformed (status 200): results missing, empty or not a list; allowing"]


async def test_the_engines_upkeep_logs_the_count_of_failures_held_back_once_the_interval_ends(
    engine: Engine, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    now = [0.0]
    engine.failures.throttle.clock = lambda: now[0]
    for n in (1, 2, 3):
        model_server.queue(status=401, error=WRONG_KEY)
        await engine.handle(said("hello", n), RecordingReply())
    await engine.upkeep(None)
    assert len(failure_lines(caplog)) == 1, "repeats within the interval are only counted"
    now[0] = 61
    await engine.upkeep(None)
    assert failure_lines(caplog)[1:] == [
        "model call failed: key_refused (status 401, type invalid_request_error, code invalid_api_key); model gpt-4o-mini"
        " (2 more like this in the last 61 s)"]
