"""The Discord bot: discord.py's gateway client, translating messages into engine turns."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import aiohttp
import discord
from aiohttp import web

from chatbots.commands import Commands
from chatbots.config import ConfigError, Config
from chatbots.engine import Engine
from chatbots.types import Inbound, Outcome

from ..service import ServiceBase, describe, vote_for
from ..tasks import TurnTasks
from .access import ChannelAccess, How
from .commands import build_tree
from .connection import Endpoints, build_client
from .events import DM_WORKSPACE, PLATFORM, is_own, translate
from .files import DiscordFiles
from .reply import DiscordReply
from .shards import ShardedClient

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 60.0
"""Seconds start() waits for the gateway's READY before giving up with a clear error."""
PRIVILEGED_INTENT_REFUSED = (
    "Discord refused the message content intent: enable MESSAGE CONTENT INTENT for the bot in the Discord "
    "Developer Portal (Bot > Privileged Gateway Intents)"
)


class DiscordService(ServiceBase):
    name = "discord"
    platform = PLATFORM

    def __init__(self, settings: Config, engine: Engine, *, update_interval: float = 1.0,
                 guild_ready_timeout: float = 2.0) -> None:
        if not settings.discord_bot_token:
            raise ConfigError("DISCORD_BOT_TOKEN is not set")
        self.endpoints = Endpoints.from_settings(settings)
        super().__init__(engine)
        self.config = settings
        self.update_interval = update_interval
        self.guild_ready_timeout = guild_ready_timeout
        """Only delays discord.py's on_ready, which start() does not wait for; tests set it small."""
        self.turns = TurnTasks()
        self.access = ChannelAccess(failures=engine.failures)
        self.commands = Commands.for_engine(engine)
        engine.notifiers[PLATFORM] = self._post_notice
        self.files = DiscordFiles(self.endpoints.api_url)
        self.client: ShardedClient | None = None
        self._sync: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        """Discord needs no HTTP endpoint: everything arrives over the gateway."""

    async def start(self) -> None:
        self.endpoints.apply()
        client = self.client = build_client(self.guild_ready_timeout, shard_count=self.config.discord_shard_count,
                                            shard_ids=self.config.discord_shards)
        for handler in (self.on_shard_connect, self.on_message, self.on_guild_channel_update, self.on_thread_update,
                        self.on_guild_role_update, self.on_guild_role_create, self.on_guild_role_delete,
                        self.on_raw_reaction_add, self.on_raw_reaction_remove, self.on_guild_remove):
            client.event(handler)
        self.tree = build_tree(client, self.commands, self._observe)
        try:
            await client.login(self.config.discord_bot_token or "")
        except discord.LoginFailure:
            await client.close()
            raise ConfigError(
                "DISCORD_BOT_TOKEN was refused by Discord (401 Unauthorized): copy the token again from the "
                "Developer Portal (Bot > Reset Token)"
            ) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as error:
            await client.close()
            raise ConfigError(f"cannot reach the Discord API at {self.endpoints.api} ({type(error).__name__}): "
                              "check DISCORD_API_URL and the network") from None
        self._task = asyncio.create_task(client.connect(reconnect=True), name="discord gateway")
        connected = asyncio.create_task(self._connected.wait())
        await asyncio.wait({self._task, connected}, timeout=CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not self._connected.is_set():
            connected.cancel()
            raise await self._startup_error()
        user = client.user
        log.info("discord connected as bot user %s, running shards %s of %s", user.id if user else "?",
                 ",".join(map(str, client.running_shards)), client.shard_count)
        if 0 in client.running_shards:  # one process registers the commands; they are global
            self._sync = asyncio.create_task(self._sync_commands())

    async def _sync_commands(self) -> None:
        """Register /chatbot with Discord (global commands); a failure is logged, and chat still works."""
        try:
            await self.tree.sync()
        except (discord.HTTPException, aiohttp.ClientError) as error:
            log.warning("could not register the /chatbot commands: %s", describe(error))
        else:
            self._observe(Outcome.COMMANDS_SYNCED)

    async def _startup_error(self) -> ConfigError:
        """Why the gateway never became ready, as one line for the operator; the client is closed."""
        assert self._task is not None and self.client is not None
        error: BaseException | None = None
        if self._task.done() and not self._task.cancelled():
            error = self._task.exception()
        await self._close_client()
        if isinstance(error, discord.PrivilegedIntentsRequired):
            return ConfigError(PRIVILEGED_INTENT_REFUSED)
        if error is None:
            return ConfigError(f"the Discord gateway at {self.endpoints.gateway} did not answer within "
                               f"{CONNECT_TIMEOUT:.0f} s: check DISCORD_GATEWAY_URL and the network")
        return ConfigError(f"the Discord gateway closed the connection at start-up ({describe(error)})")

    async def wait_closed(self) -> None:
        if self._task is None:
            return
        try:
            await asyncio.shield(self._task)
        except discord.PrivilegedIntentsRequired:
            raise ConfigError(PRIVILEGED_INTENT_REFUSED) from None

    async def stop(self, grace: float) -> None:
        self.turns.accepting = False
        if self._sync is not None:
            self._sync.cancel()
        await self.turns.drain(grace)  # replies in flight still need the client's HTTP session
        await self.files.close()
        await self._close_client()
        self.endpoints.restore()

    async def _close_client(self) -> None:
        if self.client is not None:
            await self.client.close()
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=5.0)  # closing ends the gateway loop; never raises
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: how it ended was already reported (or it ended because we closed)

    # -- gateway events (discord.py runs each handler as its own task) --

    async def on_shard_connect(self, shard_id: int) -> None:
        """The first shard to connect proves the token, intents and gateway; start() waits for that one."""
        log.info("discord shard %s of %s connected", shard_id, self.client.shard_count if self.client else "?")
        self._connected.set()

    async def on_message(self, message: discord.Message) -> None:
        client = self.client
        if client is None or client.user is None:
            return
        bot_id = client.user.id
        if is_own(message, bot_id):
            return self._observe(Outcome.OWN)  # every post and edit of ours comes back over the gateway
        guild = message.guild
        role = guild.self_role if guild is not None else None
        inbound = translate(message, bot_id, allow_bots=self.config.allow_bots, bot_role_id=role.id if role else None)
        if inbound is None:
            return self._observe(Outcome.IGNORED)
        how = self.access.how_to_answer(message)
        if how is None:
            return self._observe(Outcome.FORBIDDEN)
        if message.attachments:
            inbound = replace(inbound, files=self.files.shared(message.attachments))
        if self.turns.spawn(self._turn(message, inbound, how)) is None:
            self._observe(Outcome.SHUTTING_DOWN)

    async def _turn(self, message: discord.Message, inbound: Inbound, how: How) -> None:
        reply = DiscordReply(message, self.access, how, self.update_interval)
        try:
            result = await self.engine.handle(inbound, reply)
        except BaseException:
            self._observe(Outcome.TURN_ERROR)
            raise
        finally:
            await reply.close()
        self._observe_turn(result.status)

    async def _post_notice(self, workspace: str, channel: str, text: str) -> None:
        """A message from the bot in a channel or DM (budget alerts); raises when it cannot be posted."""
        client = self.client
        if client is None or not channel.isdigit():
            raise LookupError("no such channel")
        found = client.get_channel(int(channel)) or await client.fetch_channel(int(channel))
        if not isinstance(found, discord.abc.Messageable):
            raise LookupError("not a channel the bot can post in")
        await found.send(text, allowed_mentions=discord.AllowedMentions.none())

    async def on_raw_reaction_add(self, event: discord.RawReactionActionEvent) -> None:
        await self._feedback(event, removed=False)

    async def on_raw_reaction_remove(self, event: discord.RawReactionActionEvent) -> None:
        await self._feedback(event, removed=True)

    async def _feedback(self, event: discord.RawReactionActionEvent, removed: bool) -> None:
        """👍 / 👎 on one of the bot's replies is feedback on that reply."""
        vote = vote_for(str(event.emoji))
        client = self.client
        if vote is None or client is None or client.user is None or event.user_id == client.user.id:
            return self._observe(Outcome.IGNORED)
        workspace = str(event.guild_id) if event.guild_id else DM_WORKSPACE
        await self._vote(workspace, str(event.message_id), str(event.user_id), vote, withdrawn=removed)

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """The bot was removed from a server (or the server deleted): erase everything stored for it."""
        await self._erase(str(guild.id))

    # Permission changes: channels that refused the bot get another chance.

    async def on_guild_channel_update(self, before: Any, after: Any) -> None:
        self.access.forget(after.guild.id)

    async def on_thread_update(self, before: Any, after: Any) -> None:
        self.access.forget(after.guild.id)

    async def on_guild_role_update(self, before: Any, after: Any) -> None:
        self.access.forget(after.guild.id)

    async def on_guild_role_create(self, role: Any) -> None:
        self.access.forget(role.guild.id)

    async def on_guild_role_delete(self, role: Any) -> None:
        self.access.forget(role.guild.id)
