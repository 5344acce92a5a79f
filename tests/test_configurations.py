"""Every documented configuration starts as `chatbots run` and answers, with only the variables the README names.

Each bot is a real process with a clean environment: the basics (PATH, HOME, ...), PORT, the README's variables
for that mode, and its documented URL overrides pointing at the fakes. Nothing leaks in from the test run, so a
setting the code needs but the README does not name (a signing secret in Socket Mode, say) fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.discord_rig import ALICE, GENERAL, build_world
from tests.fakes.discord import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import FakeSlack, app_mention, event_callback, next_ts, post_signed
from tests.processes import bot_exit, bot_process, free_port

SIGNING_SECRET = "configurations-signing-secret"


@dataclass
class Fakes:
    slack: FakeSlack
    discord: FakeDiscord
    model: FakeModelServer

    def socket_mode(self) -> dict[str, str]:
        """README, Slack setup, Socket Mode: the bot token and the app-level token."""
        return {"SLACK_BOT_TOKEN": "xoxb-configurations", "SLACK_APP_TOKEN": "xapp-configurations",
                "SLACK_API_URL": self.slack.api_url}

    def http_mode(self) -> dict[str, str]:
        """README, Slack setup, HTTP mode: the bot token and the signing secret."""
        return {"SLACK_BOT_TOKEN": "xoxb-configurations", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": self.slack.api_url}

    def oauth_mode(self) -> dict[str, str]:
        """README, Slack setup, OAuth mode: the app's client id and secret and its signing secret, no bot token."""
        return {"SLACK_CLIENT_ID": self.slack.client_id, "SLACK_CLIENT_SECRET": self.slack.client_secret,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": self.slack.api_url}

    def discord_env(self) -> dict[str, str]:
        return {"DISCORD_BOT_TOKEN": self.discord.token, "DISCORD_API_URL": self.discord.api_url,
                "DISCORD_GATEWAY_URL": str(self.discord.gateway_url)}

    def model_env(self) -> dict[str, str]:
        """A model server that needs no key: OPENAI_API_KEY may then be omitted."""
        return {"OPENAI_BASE_URL": self.model.base_url}


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with FakeSlack() as slack, FakeDiscord() as discord, FakeModelServer() as model:
        build_world(discord)
        yield Fakes(slack, discord, model)


async def slack_answers_in_socket_mode(slack: FakeSlack, question: str) -> None:
    await slack.wait_for(lambda: slack.socket_connections > 0, 30, "a Socket Mode connection")
    ts = next_ts()
    await slack.socket_send_event(event_callback("T1", app_mention("C1", "U1", f"<@UBOT> {question}", ts=ts)))
    await slack_shows(slack, ts, f"echo: {question}")


async def slack_answers_over_http(slack: FakeSlack, port: int, question: str) -> None:
    ts = next_ts()
    body = event_callback("T1", app_mention("C1", "U1", f"<@UBOT> {question}", ts=ts))
    status, _ = await post_signed(None, f"http://127.0.0.1:{port}/slack/events", body, SIGNING_SECRET)
    assert status == 200
    await slack_shows(slack, ts, f"echo: {question}")


async def slack_shows(slack: FakeSlack, thread_ts: str, text: str) -> None:
    await slack.wait_for(lambda: any(m.text == text for m in slack.messages("C1") if m.thread_ts == thread_ts),
                         timeout=15, message=f"{text!r} in the thread")


async def discord_answers(discord: FakeDiscord, question: str) -> None:
    await discord.wait_connected(timeout=30)
    await discord.send_message(GENERAL, ALICE, question, mentions_bot=True)
    await discord.wait_for(lambda: f"echo: {question}" in discord.bot_contents(GENERAL), timeout=15,
                           what="the bot's answer in #general")


async def test_slack_socket_mode_starts_with_the_bot_and_app_tokens_alone_and_answers(fakes: Fakes, tmp_path: Path) -> None:
    port = free_port()
    async with bot_process({**fakes.socket_mode(), **fakes.model_env()}, port, cwd=tmp_path):
        await slack_answers_in_socket_mode(fakes.slack, "hello over a socket")
    assert (tmp_path / "chatbots.db").exists(), "CHATBOTS_DB defaults to chatbots.db in the working directory"


async def test_slack_http_mode_starts_with_the_bot_token_and_signing_secret_and_answers(fakes: Fakes, tmp_path: Path) -> None:
    port = free_port()
    async with bot_process({**fakes.http_mode(), **fakes.model_env(), "OPENAI_API_KEY": "sk-configurations"}, port,
                           cwd=tmp_path):
        await slack_answers_over_http(fakes.slack, port, "hello over http")


async def test_slack_oauth_mode_starts_with_the_client_credentials_is_installed_and_answers(
    fakes: Fakes, tmp_path: Path
) -> None:
    port = free_port()
    fakes.slack.redirect_url = f"http://127.0.0.1:{port}/slack/oauth_redirect"
    place = fakes.slack.add_workspace("T1", "Configurations")
    async with bot_process({**fakes.oauth_mode(), **fakes.model_env()}, port, cwd=tmp_path):
        installed = await fakes.slack.install_in_browser(f"http://127.0.0.1:{port}/slack/install", place)
        assert installed.status == 200 and "Installed" in installed.page
        ts = next_ts()
        body = event_callback("T1", app_mention("C1", "U1", f"<@{place.bot_user_id}> hello oauth", ts=ts),
                              bot_user_id=place.bot_user_id)
        status, _ = await post_signed(None, f"http://127.0.0.1:{port}/slack/events", body, SIGNING_SECRET)
        assert status == 200
        await slack_shows(fakes.slack, ts, "echo: hello oauth")
    answering = {call.token for call in fakes.slack.calls if call.method.startswith("chat.")}
    assert answering == set(fakes.slack.tokens_for(place))


async def test_discord_starts_with_its_token_alone_and_answers(fakes: Fakes, tmp_path: Path) -> None:
    async with bot_process({**fakes.discord_env(), **fakes.model_env()}, free_port(), cwd=tmp_path):
        await discord_answers(fakes.discord, "hello discord")


async def test_slack_and_discord_together_both_answer(fakes: Fakes, tmp_path: Path) -> None:
    port = free_port()
    async with bot_process({**fakes.socket_mode(), **fakes.discord_env(), **fakes.model_env()}, port, cwd=tmp_path):
        await asyncio.gather(slack_answers_in_socket_mode(fakes.slack, "hello slack"),
                             discord_answers(fakes.discord, "hello discord"))


async def test_a_dotenv_file_in_the_working_directory_fills_in_unset_variables(fakes: Fakes, tmp_path: Path) -> None:
    settings = {**fakes.http_mode(), **fakes.model_env()}
    (tmp_path / ".env").write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    port = free_port()
    async with bot_process({}, port, cwd=tmp_path):
        await slack_answers_over_http(fakes.slack, port, "configured by a file")


async def test_a_missing_or_refused_variable_stops_the_bot_with_one_line_naming_it(fakes: Fakes, tmp_path: Path) -> None:
    model = fakes.model_env()
    socket, http, discord, oauth = fakes.socket_mode(), fakes.http_mode(), fakes.discord_env(), fakes.oauth_mode()
    cases = {
        "socket mode without the bot token": ({k: v for k, v in socket.items() if k != "SLACK_BOT_TOKEN"} | model,
                                              "SLACK_BOT_TOKEN"),
        "http mode without the signing secret": ({k: v for k, v in http.items() if k != "SLACK_SIGNING_SECRET"} | model,
                                                 "SLACK_SIGNING_SECRET"),
        "oauth mode without the signing secret": ({k: v for k, v in oauth.items() if k != "SLACK_SIGNING_SECRET"}
                                                  | model, "SLACK_SIGNING_SECRET"),
        "oauth mode without the client secret": ({k: v for k, v in oauth.items() if k != "SLACK_CLIENT_SECRET"}
                                                 | model, "SLACK_CLIENT_SECRET"),
        "discord without its token": ({k: v for k, v in discord.items() if k != "DISCORD_BOT_TOKEN"} | model,
                                      "DISCORD_BOT_TOKEN"),
        "no model server or key": (socket | discord, "OPENAI_API_KEY"),
        "a bot token given as the app token": (socket | {"SLACK_APP_TOKEN": "xoxb-not-an-app-token"} | model,
                                               "SLACK_APP_TOKEN"),
        "a refused discord token": (discord | {"DISCORD_BOT_TOKEN": "not-the-token"} | model, "DISCORD_BOT_TOKEN"),
        "an unreachable slack api": (socket | {"SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/"} | model,
                                     "SLACK_API_URL"),
    }

    async def attempt(name: str, env: dict[str, str]) -> tuple[str, int, str]:
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        return (name, *await bot_exit(env, free_port(), cwd=folder))

    results = await asyncio.gather(*(attempt(name, env) for name, (env, _) in cases.items()))
    for name, code, stderr in results:
        variable = cases[name][1]
        lines = stderr.strip().splitlines()
        assert code != 0, name
        assert "Traceback" not in stderr, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("chatbots: ") and variable in lines[0], (name, stderr)
