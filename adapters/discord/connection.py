"""Which Discord to talk to and how: endpoints (Discord's, a self-hosted server's, or a test fake) and the client."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl

from chatbots.config import ConfigError, Config

from .shards import ShardedClient

log = logging.getLogger(__name__)


def gateway_intents() -> discord.Intents:
    """Only what the bot reads: guilds (channels, threads, roles for permissions), messages, and their content.

    Not the privileged members or presences intents, and none of the typing or voice events that
    default intents would stream in for nothing.
    """
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    intents.guild_reactions = True  # 👍 / 👎 feedback on replies; not privileged
    intents.dm_reactions = True
    return intents


GUARDED_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_REACTION_ADD",
                  "MESSAGE_REACTION_REMOVE", "INTERACTION_CREATE", "TYPING_START")
"""Per-message events: one that discord.py cannot parse is dropped, instead of ending the gateway connection."""


def guard_parsers(client: discord.Client) -> None:
    """Make a malformed per-message gateway event cost that event only.

    discord.py parses each dispatch inline in its gateway loop; a payload with a missing or mistyped field raises
    there and takes the whole connection (and so the bot) down. Discord-compatible servers and proxies do send
    such payloads. This wraps the parsers of per-message events; guild-level events are left alone, since the
    cache would be wrong without them.
    """
    parsers = client._connection.parsers  # noqa: SLF001 - the one place discord.py exposes its dispatch table

    def guarded(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def parse_or_drop(data: Any) -> None:
            try:
                parse(data)
            except Exception as error:  # noqa: BLE001 - any parse failure of one message costs that message only
                log.warning("dropped a malformed %s gateway event (%s)", event, type(error).__name__)

        return parse_or_drop

    for event in GUARDED_EVENTS:
        if event in parsers:
            parsers[event] = guarded(event, parsers[event])


def build_client(guild_ready_timeout: float = 2.0, *, shard_count: int | None = None,
                 shard_ids: Sequence[int] | None = None) -> ShardedClient:
    """The gateway client: shard_count None asks Discord for its recommendation; shard_ids None runs them all."""
    # The bot never joins voice: discord.py's start-up warnings about missing voice libraries are noise here.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    client = ShardedClient(
        shard_count=shard_count,
        shard_ids=list(shard_ids) if shard_ids is not None else None,
        intents=gateway_intents(),
        allowed_mentions=discord.AllowedMentions.none(),  # model output must never ping @everyone, roles or people
        max_messages=None,  # replies carry the message they answer; no cache needed
        member_cache_flags=discord.MemberCacheFlags.none(),  # the bot's own member is cached regardless
        chunk_guilds_at_startup=False,
        guild_ready_timeout=guild_ready_timeout,
    )
    guard_parsers(client)
    return client


@dataclass
class Endpoints:
    """DISCORD_API_URL / DISCORD_GATEWAY_URL, applied to discord.py's two class-level defaults when given.

    Both are process-wide class attributes, so they are set at start and put back at stop; an endpoint that is
    not configured is left as discord.py has it (Discord's own).
    """

    api_url: str | None = None
    gateway_url: str | None = None
    _saved: tuple[str, yarl.URL] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Config) -> Endpoints:
        api, gateway = settings.discord_api_url, settings.discord_gateway_url
        if api and not api.startswith(("http://", "https://")):
            raise ConfigError(f"DISCORD_API_URL must start with http:// or https://, got {api!r}")
        if gateway and not gateway.startswith(("ws://", "wss://")):
            raise ConfigError(f"DISCORD_GATEWAY_URL must start with ws:// or wss://, got {gateway!r}")
        return cls(api_url=api.rstrip("/") if api else None, gateway_url=gateway)

    @property
    def api(self) -> str:
        return self.api_url or discord.http.Route.BASE

    @property
    def gateway(self) -> str:
        return self.gateway_url or str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    def apply(self) -> None:
        if self._saved is None:
            self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        if self.api_url:
            discord.http.Route.BASE = self.api_url
        if self.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)  # discord.py calls .with_query

    def restore(self) -> None:
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None
