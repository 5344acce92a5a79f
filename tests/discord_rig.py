"""A whole bot (adapters.runner.Bot) wired to the fake Discord and the fake model over loopback."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from adapters.discord import DiscordService
from adapters.runner import Bot
from chatbots.config import Config
from tests.backend import value
from tests.fakes.discord import FakeDiscord, Intent, Perm
from tests.fakes.model_server import FakeModelServer
from tests.outcomes import Outcomes

GUILD = 100
OTHER_GUILD = 110
OWNER = 5
GENERAL = 200
RANDOM = 201
THREAD = 202
OTHER_GENERAL = 210
ALICE = 42
BOB = 43
OTHER_BOT = 77


def build_world(fake: FakeDiscord) -> None:
    """Two guilds: a text channel, a second channel and a thread in the first; one channel in the second."""
    fake.add_guild(GUILD, "Guild One", owner_id=OWNER, everyone_permissions=Perm.DEFAULT_EVERYONE)
    fake.add_channel(GUILD, GENERAL, "general")
    fake.add_channel(GUILD, RANDOM, "random")
    fake.add_channel(GUILD, THREAD, "a thread", type=11, parent_id=GENERAL, owner_id=ALICE)
    fake.add_member(GUILD, ALICE, "alice", nick="Ada")
    fake.add_member(GUILD, BOB, "bob")
    fake.add_member(GUILD, OTHER_BOT, "otherbot", bot=True)
    fake.add_guild(OTHER_GUILD, "Guild Two", owner_id=OWNER + 1)
    fake.add_channel(OTHER_GUILD, OTHER_GENERAL, "general")
    fake.add_member(OTHER_GUILD, ALICE)


def _kept(outcome: str) -> bool:
    """The bot's own posts echo back at unpredictable times; command registration is not a message."""
    return outcome != "own" and not outcome.startswith("command")


@dataclass
class DiscordRig:
    fake: FakeDiscord
    model: FakeModelServer
    bot: Bot
    outcomes: Outcomes = field(default_factory=lambda: Outcomes(keep=_kept))
    """What the bot did with each message it received, except its own echoed posts and command bookkeeping."""

    def __post_init__(self) -> None:
        self.service.observers.append(self.outcomes.record)

    @property
    def service(self) -> DiscordService:
        return next(s for s in self.bot.services if isinstance(s, DiscordService))

    async def wait_outcomes(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until the bot has finished with `count` messages (ignored, refused, or its turn done)."""
        return await self.outcomes.wait(count, timeout)

    async def next_outcome(self, timeout: float = 5.0) -> str:
        return (await self.wait_outcomes(len(self.outcomes) + 1, timeout))[-1]

    async def mention(self, text: str, *, channel: int = GENERAL, user: int = ALICE, **options: Any) -> dict[str, Any]:
        """Alice (by default) mentions the bot; returns the dispatched MESSAGE_CREATE payload."""
        return await self.fake.send_message(channel, user, text, mentions_bot=True, **options)

    async def ask(self, text: str, *, channel: int = GENERAL, user: int = ALICE, **options: Any) -> list[str]:
        """Mention the bot and wait for its turn to end; returns the bot's messages in the channel."""
        await self.mention(text, channel=channel, user=user, **options)
        outcome = await self.next_outcome()
        assert outcome == "turn:answered", outcome
        return self.fake.bot_contents(channel)

    def replies_to(self, message_id: int | str) -> list[dict[str, Any]]:
        """The bot's messages that reply to this message."""
        return [m for m in self.fake.bot_messages(self._channel_of(message_id))
                if (m.get("message_reference") or {}).get("message_id") == str(message_id)]

    def _channel_of(self, message_id: int | str) -> int:
        found = self.fake.get_message(int(message_id))
        assert found is not None
        return int(found["channel_id"])

    async def same_channel_in_another_guild(self, earlier: dict[str, Any], guild_id: int, text: str) -> dict[str, Any]:
        """Dispatch a mention with the same channel id as `earlier` but another guild id.

        Real snowflakes never repeat across guilds, and the fake cannot even model it; this checks that the guild
        is part of every conversation key all the same.
        """
        payload = copy.deepcopy(earlier)
        payload.update(id=str(self.fake._ids.next()), guild_id=str(guild_id), content=f"<@{self.fake.bot_id}> {text}")
        await self.fake.dispatch("MESSAGE_CREATE", payload, Intent.GUILD_MESSAGES)
        return payload

    def stored_messages(self) -> int:
        return int(value(self.bot.engine.store, "SELECT count(*) FROM messages"))


@asynccontextmanager
async def discord_rig(settings: Config, *, world: Callable[[FakeDiscord], None] = build_world,
                      update_interval: float = 1.0, **overrides: Any) -> AsyncIterator[DiscordRig]:
    async with FakeDiscord() as fake, FakeModelServer() as model:
        world(fake)
        configured = replace(
            settings,
            openai_base_url=model.base_url,
            discord_bot_token=fake.token,
            discord_api_url=fake.api_url,
            discord_gateway_url=str(fake.gateway_url),
            port=0,
            **overrides,
        )
        bot = Bot(configured)
        for service in bot.services:
            if isinstance(service, DiscordService):
                service.update_interval = update_interval
                service.guild_ready_timeout = 0.05
        await bot.start(host="127.0.0.1")
        try:
            await fake.wait_connected()
            yield DiscordRig(fake, model, bot)
        finally:
            await bot.stop(grace=2)
        assert not fake.internal_errors, fake.internal_errors
