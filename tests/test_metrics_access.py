"""`/metrics` is off unless asked for: with a bearer token on the public port, or on a port of its own."""

from __future__ import annotations

import socket
from dataclasses import replace

import aiohttp
import pytest

from adapters.runner import Bot
from chatbots.config import ConfigError, Config
from tests.processes import free_port
from tests.slack_rig import slack_rig
from tests.test_observability import sample

TOKEN = "metrics-token-0123456789abcdef"


async def get(port: int, headers: dict[str, str] | list[tuple[str, str]] | None = None) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


async def test_metrics_are_off_when_neither_a_token_nor_a_port_is_set(settings: Config) -> None:
    async with slack_rig(settings) as rig:
        status, _, _ = await get(rig.bot.port)
    assert status == 404


async def test_with_a_token_metrics_answer_only_requests_bearing_it(settings: Config) -> None:
    async with slack_rig(replace(settings, metrics_token=TOKEN)) as rig:
        await rig.reply_in("C1", await rig.mention("hello"))
        refused = [
            None,
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer ünïcödé"},
            [("Authorization", "Bearer nope"), ("Authorization", f"Bearer {TOKEN}")],
        ]
        for headers in refused:
            status, text, response_headers = await get(rig.bot.port, headers)
            assert status == 401 and "chatbots_" not in text, headers
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
        status, text, _ = await get(rig.bot.port, {"Authorization": f"bearer {TOKEN}"})
    assert status == 200 and "chatbots_turns_total" in text


async def test_with_a_port_metrics_are_served_there_and_not_on_the_public_port(settings: Config) -> None:
    metrics_port = free_port()
    async with slack_rig(replace(settings, metrics_port=metrics_port)) as rig:
        await rig.reply_in("C1", await rig.mention("hello"))
        await rig.wait_outcomes(1)  # the turn is counted once it is stored, just after its reply shows
        public, _, _ = await get(rig.bot.port)
        private, text, _ = await get(metrics_port)
    assert public == 404
    assert private == 200 and sample(text, "chatbots_turns_total", platform="slack", outcome="answered") == 1


async def test_with_both_the_metrics_port_also_wants_the_token(settings: Config) -> None:
    metrics_port = free_port()
    async with slack_rig(replace(settings, metrics_port=metrics_port, metrics_token=TOKEN)) as rig:
        public, _, _ = await get(rig.bot.port, {"Authorization": f"Bearer {TOKEN}"})
        without, _, _ = await get(metrics_port)
        bearing, _, _ = await get(metrics_port, {"Authorization": f"Bearer {TOKEN}"})
    assert (public, without, bearing) == (404, 401, 200)


async def test_a_metrics_port_in_use_stops_start_up_with_a_line_naming_it(settings: Config) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = Bot(replace(settings, slack_bot_token="xoxb-x", slack_signing_secret="s", port=0, metrics_port=port))
        try:
            with pytest.raises(ConfigError, match=f"CHATBOTS_METRICS_PORT {port}"):
                await bot.start(host="127.0.0.1")
        finally:
            await bot.stop(grace=0)


@pytest.mark.parametrize(("env", "message"), [
    ({"CHATBOTS_METRICS_TOKEN": "short"}, "CHATBOTS_METRICS_TOKEN must be at least 16 characters"),
    ({"CHATBOTS_METRICS_PORT": "3000"}, "CHATBOTS_METRICS_PORT must differ from PORT"),
    ({"PORT": "8080", "CHATBOTS_METRICS_PORT": "8080"}, "CHATBOTS_METRICS_PORT must differ from PORT"),
    ({"CHATBOTS_METRICS_PORT": "70000"}, "CHATBOTS_METRICS_PORT must be at most 65535"),
    ({"CHATBOTS_METRICS_PORT": "nine"}, "CHATBOTS_METRICS_PORT must be a number"),
    ({"PORT": "65536"}, "PORT must be at most 65535"),
])
def test_metrics_settings_are_checked_with_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)


def test_metrics_settings_are_read_from_the_environment() -> None:
    settings = Config.from_env({"CHATBOTS_METRICS_TOKEN": TOKEN, "CHATBOTS_METRICS_PORT": "9102"})
    assert (settings.metrics_token, settings.metrics_port) == (TOKEN, 9102)
