"""Against a real OpenAI-compatible gateway written by others: LiteLLM's proxy on 127.0.0.1, with mock models.

LiteLLM answers from `mock_response` without calling any provider; it is kept off the network (a local model cost
map, and a dead proxy for anything it might still try). It is slow to install, so it lives in the `gateway` extra:
without it this module skips, unless CHATBOTS_REQUIRE_GATEWAY=1 (as in .ci/run), where a missing proxy fails.

The proxy runs with a master key and no key database, as a first try of LiteLLM does: it then refuses any other key
with a 400 `no_db_connection`, which the bot reads as a refused key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from chatbots.config import Config
from chatbots.engine import Engine, TurnResult
from chatbots.failures import CONTEXT_NOTICE, FLAGGED_INPUT_NOTICE, KEY_REFUSED_NOTICE
from chatbots.model import OpenAIChat
from chatbots.moderation import UNAVAILABLE_NOTICE
from chatbots.store import Store
from chatbots.types import ConversationKey, Inbound
from tests.backend import rows, value
from tests.fakes.reply import RecordingReply
from tests.processes import free_port
from tests.slack_rig import slack_rig

pytestmark = pytest.mark.gateway

LITELLM = Path(sys.executable).parent / "litellm"
REQUIRED = os.environ.get("CHATBOTS_REQUIRE_GATEWAY") == "1"
if not LITELLM.exists():
    if REQUIRED:
        raise RuntimeError(f"CHATBOTS_REQUIRE_GATEWAY=1 but LiteLLM's proxy is not installed ({LITELLM}): "
                           "pip install -e '.[gateway]'")
    pytest.skip("LiteLLM's proxy is not installed (pip install -e '.[gateway]')", allow_module_level=True)

MASTER_KEY = "sk-gateway-master-0123456789"
ANSWER = "Hello from the gateway"
CONFIG = f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/gpt-4o-mini, mock_response: "{ANSWER}", api_key: unused}}
  - model_name: small
    litellm_params: {{model: openai/small, mock_response: "litellm.ContextWindowExceededError", api_key: unused}}
  - model_name: filtered
    litellm_params: {{model: azure/filtered, mock_response: "Exception: content_filter_policy", api_key: unused}}
general_settings:
  master_key: {MASTER_KEY}
litellm_settings:
  telemetry: false
"""
READY = "Uvicorn running on"
START_TIMEOUT = 120.0
"""Seconds for the proxy to start: several on an idle machine, more on a shared CI runner."""
OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else it downloads the model cost map at import
    "LITELLM_TELEMETRY": "False",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",  # anything it still tries fails at once
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
}
KEY = ConversationKey("test", "T1", "C1", "t1")


@dataclass
class Gateway:
    url: str
    output: list[str]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("litellm")
    (folder / "config.yaml").write_text(CONFIG)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OPENAI_", "AZURE_", "LITELLM_"))}
    process = subprocess.Popen(
        [str(LITELLM), "--config", str(folder / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, env={**env, **OFFLINE}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:  # drains the pipe for the proxy's whole life, so it never blocks on a full one
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if READY in line:
                ready.set()
        ready.set()  # it exited

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(START_TIMEOUT) or process.poll() is not None:
            raise RuntimeError("LiteLLM's proxy did not start:\n" + "".join(output[-40:]))
        yield Gateway(f"http://127.0.0.1:{port}/v1", output)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def settings_for(gateway: Gateway, tmp_path: Path, **overrides: object) -> Config:
    base = Config(openai_api_key=MASTER_KEY, openai_base_url=gateway.url, db_path=str(tmp_path / "bot.db"),
                  stall_timeout=20.0, model_retries=0, moderation=False)
    return replace(base, **overrides)  # type: ignore[arg-type]


async def chatbots(*args: str, gateway: Gateway, tmp_path: Path, **env: str) -> tuple[int, str, str]:
    """`chatbots ARGS` as a person runs it, against the gateway, with only the variables the README names."""
    basics = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_"))}
    variables = {"OPENAI_BASE_URL": gateway.url, "OPENAI_API_KEY": MASTER_KEY, "CHATBOTS_DB": str(tmp_path / "bot.db"),
                 **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", *args, env={**basics, **variables},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def ask(settings: Config, text: str = "hello") -> tuple[TurnResult, RecordingReply, Engine]:
    engine = Engine(Store.open(settings.db_path), OpenAIChat.from_settings(settings), settings)
    reply = RecordingReply()
    result = await engine.handle(Inbound(KEY, "m1", "U1", "Ada", text), reply)
    return result, reply, engine


async def test_chat_streams_an_answer_through_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await chatbots("chat", "hello", gateway=gateway, tmp_path=tmp_path, CHATBOTS_MODERATION="off")
    assert (code, out.strip()) == (0, ANSWER), err


async def test_the_gateways_usage_is_recorded_not_estimated(gateway: Gateway, tmp_path: Path) -> None:
    result, reply, engine = await ask(settings_for(gateway, tmp_path))
    try:
        assert result.status == "answered" and reply.text == ANSWER
        assert result.usage is not None and not result.usage.estimated, "the gateway reported the usage"
        assert rows(engine.store, "SELECT prompt_tokens, completion_tokens, status FROM messages WHERE role = 'assistant'") == [
            (result.usage.prompt_tokens, result.usage.completion_tokens, "ok")]
    finally:
        await engine.close()


async def test_a_wrong_key_tells_the_person_and_the_operator_what_failed(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await chatbots("chat", "hello", gateway=gateway, tmp_path=tmp_path, CHATBOTS_MODERATION="off",
                                    OPENAI_API_KEY="sk-not-the-right-key")
    assert code == 1 and KEY_REFUSED_NOTICE in out
    assert "model call failed: key_refused (status 400, type no_db_connection, code 400)" in err
    assert "sk-not-the-right-key" not in err and "No connected db" not in err


async def test_an_unknown_model_names_it_and_the_command_that_changes_it(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await chatbots("chat", "hello", gateway=gateway, tmp_path=tmp_path, CHATBOTS_MODERATION="off",
                                    CHATBOTS_MODEL="gpt-9-turbo")
    assert code == 1 and "`gpt-9-turbo`" in out and "`/chatbot model`" in out
    assert "model call failed: model_unknown (status 400, type invalid_request_error, code 400); model gpt-9-turbo" in err


async def test_doctor_names_the_models_the_gateway_serves(gateway: Gateway, tmp_path: Path) -> None:
    code, out, _ = await chatbots("doctor", gateway=gateway, tmp_path=tmp_path, CHATBOTS_MODEL="gpt-9-turbo")
    assert code == 1
    assert "model gpt-9-turbo not served by this gateway: available are filtered, gpt-4o-mini, small" in out
    code, out, _ = await chatbots("doctor", gateway=gateway, tmp_path=tmp_path, OPENAI_API_KEY="sk-wrong-key-123")
    assert "key refused to GET /models (status 400, type no_db_connection, code 400)" in out


async def test_a_gateway_without_moderations_is_explained(gateway: Gateway, tmp_path: Path) -> None:
    code, out, err = await chatbots("chat", "hello", gateway=gateway, tmp_path=tmp_path)  # moderation on by default
    assert code == 1 and UNAVAILABLE_NOTICE in out
    assert "moderation call failed: server_error (status 500" in err and "ValueError" not in err
    code, out, _ = await chatbots("doctor", gateway=gateway, tmp_path=tmp_path)
    moderation = next(line for line in out.splitlines() if line.startswith("moderation "))
    assert "FAIL" in moderation and "server error (status 500" in moderation
    assert "CHATBOTS_MODERATION_BASE_URL" in out


async def test_a_context_window_error_is_retried_shorter_then_explained(
    gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    result, reply, engine = await ask(settings_for(gateway, tmp_path, model="small"))
    await engine.close()
    assert result.status == "failed" and reply.notice == CONTEXT_NOTICE
    assert any("trying once with less history" in r.getMessage() for r in caplog.records)


async def test_a_content_policy_refusal_reads_like_moderation(gateway: Gateway, tmp_path: Path) -> None:
    result, reply, engine = await ask(settings_for(gateway, tmp_path, model="filtered"))
    await engine.close()
    assert result.status == "flagged" and reply.notice == FLAGGED_INPUT_NOTICE


async def test_a_slack_turn_streams_through_the_gateway(gateway: Gateway, settings: Config, tmp_path: Path) -> None:
    async with slack_rig(settings_for(gateway, tmp_path), "http", model_url=gateway.url) as rig:
        ts = await rig.mention("hello")
        [reply] = await rig.reply_in("C1", ts)
        assert reply.text == ANSWER and reply.streamed
        assert await rig.wait_outcomes(1) == ["turn:answered"]
        assert value(rig.bot.engine.store, "SELECT completion_tokens FROM messages WHERE role = 'assistant'") > 0


def test_the_gateway_never_reached_for_the_network(gateway: Gateway) -> None:
    said = "".join(gateway.output)
    assert "cost map fetch" not in said and "ConnectError" not in said and "Name or service not known" not in said
