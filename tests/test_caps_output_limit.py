"""The output limit reaches the model under a name the server honours, whatever OpenAI-compatible server it is."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from chatbots.model import ModelError, OpenAIChat
from chatbots.types import Usage
from tests.fakes.model_server import FakeModelServer

ASK = [{"role": "user", "content": "tell me everything"}]
LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")


def names(body: dict) -> list[str]:
    return [name for name in LIMIT_FIELDS if name in body]


async def completion_tokens(chat: OpenAIChat, limit: int) -> int:
    usage = [part async for part in chat.stream("gpt-4o-mini", ASK, max_output=limit) if isinstance(part, Usage)]
    return usage[0].completion_tokens


@pytest.fixture
async def chat(model_server: FakeModelServer) -> AsyncIterator[OpenAIChat]:
    model_server.answer_tokens = 500  # talks on unless a limit it honours stops it
    client = OpenAIChat(model_server.base_url, "sk-test", stall_timeout=5.0)
    yield client
    await client.close()


async def test_a_server_that_only_knows_max_tokens_gets_the_limit_under_that_name(
    chat: OpenAIChat, model_server: FakeModelServer
) -> None:
    model_server.limit_fields = ("max_tokens",)
    model_server.unknown_limit_field = "reject"  # a strict server: 400 for max_completion_tokens
    assert await completion_tokens(chat, 50) == 50
    assert [names(body) for body in model_server.requests] == [list(LIMIT_FIELDS), ["max_tokens"]]
    assert await completion_tokens(chat, 50) == 50
    assert names(model_server.requests[-1]) == ["max_tokens"]  # remembered: no second refusal


async def test_a_server_refusing_both_names_at_once_gets_max_completion_tokens(
    chat: OpenAIChat, model_server: FakeModelServer
) -> None:
    model_server.exclusive_limits = True  # as OpenAI answers
    assert await completion_tokens(chat, 40) == 40
    assert [names(body) for body in model_server.requests] == [list(LIMIT_FIELDS), ["max_completion_tokens"]]
    assert await completion_tokens(chat, 40) == 40
    assert len(model_server.requests) == 3


async def test_a_server_silently_ignoring_max_completion_tokens_is_still_bounded(
    chat: OpenAIChat, model_server: FakeModelServer
) -> None:
    model_server.limit_fields = ("max_tokens",)  # like Ollama: an unknown field is dropped without a word
    assert await completion_tokens(chat, 30) == 30
    assert len(model_server.requests) == 1


def test_openai_itself_gets_max_completion_tokens_alone() -> None:
    body = OpenAIChat("https://api.openai.com/v1", "sk-test", stall_timeout=5.0).request_body("o3-mini", ASK, 100)
    assert names(body) == ["max_completion_tokens"] and body["max_completion_tokens"] == 100


async def test_a_refusal_for_another_reason_is_not_retried(chat: OpenAIChat, model_server: FakeModelServer) -> None:
    model_server.queue(status=400)
    with pytest.raises(ModelError) as failure:
        await completion_tokens(chat, 30)
    assert failure.value.kind == "rejected" and len(model_server.requests) == 1


async def test_a_server_ignoring_every_limit_is_named_in_the_log(
    chat: OpenAIChat, model_server: FakeModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    model_server.limit_fields = ()
    with caplog.at_level(logging.WARNING, logger="chatbots.model"):
        assert await completion_tokens(chat, 30) == 500
    assert any("ignored the output limit" in record.getMessage() for record in caplog.records)
