"""A whole bot wired to the fake Slack and the fake model over loopback, in HTTP or Socket Mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.runner import Bot
from adapters.slack import SlackService
from chatbots.clock import Clock
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from tests.backend import open_store
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import (
    FakeSlack,
    PostedMessage,
    app_mention,
    event_callback,
    next_ts,
    post_signed,
    slash_command_form,
)
from tests.outcomes import Outcomes

SECRET = "test-signing-secret"


@dataclass
class SlackRig:
    slack: FakeSlack
    model: FakeModelServer
    bot: Bot
    mode: str
    outcomes: Outcomes = field(default_factory=Outcomes)

    def __post_init__(self) -> None:
        self.service.observers.append(self.outcomes.record)

    async def wait_outcomes(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until the bot has finished with `count` events (ignored, deduplicated or turn done)."""
        return await self.outcomes.wait(count, timeout)

    @property
    def service(self) -> SlackService:
        return next(s for s in self.bot.services if isinstance(s, SlackService))

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}/slack/events"

    async def deliver(self, event: dict[str, Any], *, team: str = "T1", event_id: str | None = None, retry: int | None = None) -> dict[str, Any]:
        """Send one event the way Slack would in this mode; returns the event_callback body."""
        body = event_callback(team, event, event_id)
        if self.mode == "http":
            self.slack.record_event(body)
            status, text = await post_signed(None, self.events_url, body, SECRET, retry_num=retry)
            assert status == 200, (status, text)
        else:
            envelope = await self.slack.socket_send_event(body, retry_attempt=retry or 0, retry_reason="timeout" if retry else "")
            await self.slack.wait_ack(envelope)
        return body

    async def mention(self, text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None, team: str = "T1") -> str:
        ts = next_ts()
        await self.deliver(app_mention(channel, user, f"<@UBOT> {text}", ts=ts, thread_ts=thread_ts, team=team), team=team)
        return ts

    async def reply_in(self, channel: str, thread_ts: str, count: int = 1) -> list[PostedMessage]:
        """Wait until the bot has finished `count` replies in the thread; returns the bot's messages there."""

        def finished() -> list[PostedMessage] | None:
            mine = [m for m in self.slack.messages(channel) if m.thread_ts == thread_ts]
            done = [m for m in mine if not m.streamed or m.stream_state == "completed"]
            return mine if len(done) >= count and len(done) == len(mine) else None

        return await self.slack.wait_for(finished, message=f"{count} finished replies in {channel}/{thread_ts}")

    async def command(self, text: str, *, user: str = "U1", team: str = "T1", channel: str = "C1") -> str:
        """Run `/chatbot text` as Slack would deliver it; returns the private answer."""
        form = slash_command_form(team, user, channel, text)
        if self.mode == "http":
            status, body = await post_signed(None, self.events_url, form, SECRET, json_body=False)
            assert status == 200, (status, body)
            answer = json.loads(body)
            assert answer["response_type"] == "ephemeral"
            return answer["text"]
        envelope = await self.slack.socket_send_slash_command(form)
        payload = await self.slack.wait_ack(envelope)
        assert payload is not None and payload["response_type"] == "ephemeral"
        return payload["text"]

    async def interact(self, payload: dict[str, Any]) -> None:
        """Send an interactive payload the way Slack would in this mode: signed form `payload=<json>` over HTTP,
        an `interactive` envelope over the socket; waits for the acknowledgement."""
        if self.mode == "http":
            status, text = await post_signed(None, self.events_url, {"payload": json.dumps(payload)}, SECRET,
                                             json_body=False)
            assert status == 200, (status, text)
        else:
            envelope = await self.slack.socket_send_interactive(payload)
            await self.slack.wait_ack(envelope)

    async def wait_for_text(self, thread_ts: str, needle: str, channel: str = "C1") -> list[PostedMessage]:
        """Wait until the bot's messages in a thread show needle; returns them."""

        def shown() -> list[PostedMessage] | None:
            mine = [m for m in self.slack.messages(channel) if m.thread_ts == thread_ts]
            return mine if any(needle in m.text for m in mine) else None

        return await self.slack.wait_for(shown, message=f"{needle!r} in {channel}/{thread_ts}")


@asynccontextmanager
async def slack_rig(
    settings: Config, mode: str = "http", clock: Clock | None = None, model_url: str | None = None, **fake_options: Any
) -> AsyncIterator[SlackRig]:
    """The bot on the fake Slack; its model is the fake model server, or the one at model_url (a real gateway)."""
    async with FakeSlack(**fake_options) as slack, FakeModelServer() as model:
        configured = replace(
            settings,
            openai_base_url=model_url or model.base_url,
            slack_bot_token="xoxb-test-token",
            slack_signing_secret=SECRET,
            slack_app_token="xapp-test-token" if mode == "socket" else None,
            slack_api_url=slack.api_url,
            port=0,
        )
        engine = None
        if clock is not None:
            engine = Engine(open_store(configured, clock), OpenAIChat.from_settings(configured), configured)
        bot = Bot(configured, engine)
        await bot.start(host="127.0.0.1")
        try:
            yield SlackRig(slack, model, bot, mode)
        finally:
            await bot.stop(grace=2)
