"""Extra headers for gateways and Azure-style deployments reach every call to the chat server, and only that server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from adapters.doctor import doctor
from chatbots.config import ConfigError, Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.moderation import Moderator
from chatbots.types import Usage
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import serve

GATEWAY_SECRET = "gw-secret-value-123"
STREAM = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
          b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\ndata: [DONE]\n\n')


@dataclass
class Recorder:
    """A minimal OpenAI-compatible server that keeps each request's path and headers."""

    seen: list[tuple[str, CIMultiDictProxy[str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/moderations", self.moderations)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, request.headers))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(STREAM)
        return response

    async def models(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers))
        return web.json_response({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    async def moderations(self, request: web.Request) -> web.Response:
        self.seen.append((request.path, request.headers))
        return web.json_response({"results": [{"flagged": False, "categories": {}}]})


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    found = Recorder()
    async with serve(found.app()) as url:
        yield found, url + "/v1"


def configured(url: str, tmp_path: Path, **more: str) -> Config:
    return Config.from_env({
        "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": url, "CHATBOTS_DB": str(tmp_path / "chatbots.db"),
        "CHATBOTS_MODEL_HEADERS": f"X-Gateway-Key: {GATEWAY_SECRET}; api-version: 2024-10-21",
        "OPENAI_ORG_ID": "org-rec", "OPENAI_PROJECT_ID": "proj_rec", **more,
    })


def extras(headers: CIMultiDictProxy[str]) -> dict[str, str | None]:
    return {name: headers.get(name) for name in
            ("Authorization", "X-Gateway-Key", "api-version", "OpenAI-Organization", "OpenAI-Project")}


WITH_EXTRAS = {"Authorization": "Bearer sk-test", "X-Gateway-Key": GATEWAY_SECRET, "api-version": "2024-10-21",
               "OpenAI-Organization": "org-rec", "OpenAI-Project": "proj_rec"}


async def test_chat_moderation_model_list_and_doctor_all_send_the_extra_headers(
    recorder: tuple[Recorder, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = recorder
    settings = configured(url, tmp_path)
    caplog.set_level(logging.DEBUG)
    chat = OpenAIChat.from_settings(settings)
    moderator = Moderator.from_settings(settings, chat.client)
    assert moderator is not None and moderator.client is chat.client  # one session for the one server
    try:
        parts = [part async for part in chat.stream("gpt-4o-mini", [{"role": "user", "content": "hi"}])]
        assert parts == ["hi", Usage(3, 1)]
        assert await chat.list_models() == ["gpt-4o-mini"]
        assert not (await moderator.check("hello")).blocked
    finally:
        await moderator.close()
        await chat.close()
    code, text = await doctor(settings)

    assert code == 0, text
    paths = [path for path, _ in server.seen]
    assert paths == ["/v1/chat/completions", "/v1/models", "/v1/moderations", "/v1/models", "/v1/moderations"]
    assert [extras(headers) for _, headers in server.seen] == [WITH_EXTRAS] * len(paths)
    assert GATEWAY_SECRET not in caplog.text and GATEWAY_SECRET not in text


async def test_a_moderation_server_of_its_own_gets_neither_the_chat_headers_nor_its_session(
    recorder: tuple[Recorder, str], tmp_path: Path
) -> None:
    server, url = recorder
    elsewhere = url.replace("127.0.0.1", "localhost")  # the same recorder under another base URL
    settings = configured(url, tmp_path, CHATBOTS_MODERATION_BASE_URL=elsewhere, CHATBOTS_MODERATION_API_KEY="sk-mod")
    chat = OpenAIChat.from_settings(settings)
    moderator = Moderator.from_settings(settings, chat.client)
    assert moderator is not None and moderator.client is not chat.client
    try:
        await moderator.check("hello")
    finally:
        await moderator.close()
        await chat.close()

    assert [extras(headers) for _, headers in server.seen] == [
        {"Authorization": "Bearer sk-mod", "X-Gateway-Key": None, "api-version": None,
         "OpenAI-Organization": None, "OpenAI-Project": None}]


def test_model_headers_are_parsed_as_name_value_pairs() -> None:
    settings = Config.from_env({"CHATBOTS_MODEL_HEADERS": " api-key: abc:def ; X-Route:eu ;"})
    assert settings.model_headers == (("api-key", "abc:def"), ("X-Route", "eu"))
    assert Config.from_env({}).model_headers == ()


@pytest.mark.parametrize("raw", ["api-key abc-secret", "api-key: ok; : abc-secret", "bad name: abc-secret",
                                 "api-key:", "X-Ok: fine; X-Tab: abc-secret\x01"])
def test_a_malformed_header_list_is_one_error_line_without_the_value(raw: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"CHATBOTS_MODEL_HEADERS": raw})
    message = str(raised.value)
    assert message.startswith("CHATBOTS_MODEL_HEADERS must read `Name: value; Name2: value2`")
    assert "\n" not in message and "abc-secret" not in message


async def test_doctor_never_prints_a_header_value(recorder: tuple[Recorder, str], tmp_path: Path) -> None:
    _, url = recorder
    settings = replace(configured(url, tmp_path), model="not-listed-" + GATEWAY_SECRET)
    code, text = await doctor(settings)

    assert code == 1 and "not-listed-[redacted]" in text and GATEWAY_SECRET not in text


async def test_an_engine_moderates_over_its_chat_session_when_both_are_one_server(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    shared = make_engine(moderation=True)
    apart = make_engine(moderation=True, moderation_base_url=model_server.base_url.replace("127.0.0.1", "localhost"))

    assert isinstance(shared.model, OpenAIChat) and isinstance(apart.model, OpenAIChat)
    assert shared.moderator is not None and shared.moderator.client is shared.model.client
    assert apart.moderator is not None and apart.moderator.client is not apart.model.client
