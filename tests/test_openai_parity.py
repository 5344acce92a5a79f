"""Our streaming client reads what the official `openai` SDK reads: the same recorded bytes, the same text, usage and errors.

A local aiohttp server replays recorded chat-completion responses (SSE streams and error bodies); AsyncOpenAI and
OpenAIChat each read every one of them, and what they make of it is compared, then checked against what the
recording holds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web

from chatbots.model import ModelError, OpenAIChat
from chatbots.types import Usage
from tests.fakes.slack import serve

ASK = [{"role": "user", "content": "say hello"}]


def _event(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    """One chunk as OpenAI sends it (with include_usage every chunk carries "usage": null until the last)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    chunk = {"id": "chatcmpl-rec1", "object": "chat.completion.chunk", "created": 1730000000, "model": "gpt-4o-mini-2024-07-18",
             "system_fingerprint": "fp_rec", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
BODY = (_event({"role": "assistant", "content": "", "refusal": None}) + _event({"content": "Hello"})
        + _event({"content": ", wor"}) + _event({"content": "ld!"}) + _event({}, finish="stop"))
STREAMS: dict[str, bytes] = {
    "normal": BODY + _event(None, usage=USAGE) + b"data: [DONE]\n\n",
    "no-usage": BODY + b"data: [DONE]\n\n",
    "crlf": (BODY + _event(None, usage=USAGE) + b"data: [DONE]\n\n").replace(b"\n", b"\r\n"),
    "comments": b": keep-alive\n\n" + BODY.replace(b"\n\n", b"\n\n: ping\n\n") + _event(None, usage=USAGE) + b"data: [DONE]\n\n",
    "error-mid-stream": (_event({"role": "assistant", "content": ""}) + _event({"content": "Hel"})
                         + b'data: {"error":{"message":"The server had an error while processing your request.",'
                           b'"type":"server_error","param":null,"code":null}}\n\n'),
}
"""Stream bodies as an OpenAI-compatible server writes them, by scenario (the model name asked for)."""

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "http-400": (400, {"error": {"message": "Invalid 'messages': empty array.", "type": "invalid_request_error",
                                 "param": "messages", "code": "empty_array"}}),
    "http-401": (401, {"error": {"message": "Incorrect API key provided: sk-test.", "type": "invalid_request_error",
                                 "param": None, "code": "invalid_api_key"}}),
    "http-429": (429, {"error": {"message": "Rate limit reached for gpt-4o-mini.", "type": "requests",
                                 "param": None, "code": "rate_limit_exceeded"}}),
    "http-500": (500, {"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": None}}),
}

SDK_KINDS: list[tuple[type[Exception], str]] = [
    (openai.BadRequestError, "rejected"),
    (openai.AuthenticationError, "key_refused"),
    (openai.RateLimitError, "rate_limited"),
    (openai.InternalServerError, "server_error"),
    (openai.APIError, "server_error"),  # an error event inside a 200 stream
]
"""The SDK's exceptions and the ModelError kind each one means."""

EXPECTED: dict[str, tuple[str, Usage | None, str | None]] = {
    "normal": ("Hello, world!", Usage(9, 4), None),
    "no-usage": ("Hello, world!", None, None),
    "crlf": ("Hello, world!", Usage(9, 4), None),
    "comments": ("Hello, world!", Usage(9, 4), None),
    "error-mid-stream": ("Hel", None, "server_error"),
    "http-400": ("", None, "rejected"),
    "http-401": ("", None, "key_refused"),
    "http-429": ("", None, "rate_limited"),
    "http-500": ("", None, "server_error"),
}


async def replay(request: web.Request) -> web.StreamResponse:
    scenario = (await request.json())["model"]
    if scenario in ERRORS:
        status, body = ERRORS[scenario]
        return web.json_response(body, status=status)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    await response.write(STREAMS[scenario])
    await response.write_eof()
    return response


@pytest.fixture
async def recorded() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", replay)
    async with serve(app) as url:
        yield url + "/v1"


async def through_sdk(base_url: str, scenario: str) -> tuple[str, Usage | None, str | None]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    text, usage, kind = "", None, None
    try:
        stream = await client.chat.completions.create(model=scenario, messages=ASK, stream=True,  # type: ignore[arg-type]
                                                      stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
    except openai.APIError as error:
        kind = next(name for cls, name in SDK_KINDS if isinstance(error, cls))
    finally:
        await client.close()
    return text, usage, kind


async def through_ours(base_url: str, scenario: str) -> tuple[str, Usage | None, str | None]:
    chat = OpenAIChat(base_url, "sk-test", stall_timeout=5.0, retries=0)
    text, usage, kind = "", None, None
    try:
        async for part in chat.stream(scenario, ASK):
            if isinstance(part, Usage):
                usage = part
            else:
                text += part
    except ModelError as error:
        kind = error.kind
    finally:
        await chat.close()
    return text, usage, kind


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
async def test_the_sdk_and_our_client_read_a_recorded_response_alike(recorded: str, scenario: str) -> None:
    ours = await through_ours(recorded, scenario)
    sdk = await through_sdk(recorded, scenario)

    assert ours == sdk
    assert ours == EXPECTED[scenario]


def test_every_recorded_response_is_compared() -> None:
    assert set(EXPECTED) == set(STREAMS) | set(ERRORS)
