"""A fake Discord server (REST API + gateway) on loopback, driven by the real discord.py.

Why: mocking discord.py internals (dpytest and friends) tests the mock, not the wire. This fake
speaks Discord's actual wire format on 127.0.0.1 so the shipped code path (HTTP client, rate-limit
handling, gateway session, parsers, app-command tree, webhook adapter) runs for real, offline.

Point discord.py at it with two class attributes (see :func:`redirect_discordpy`)::

    discord.http.Route.BASE = fake.api_url                         # "http://127.0.0.1:P/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = fake.gateway_url   # a yarl.URL, not a str

Payloads are schema-complete for discord.py 2.7: a missing key inside a gateway parser raises in the
client's connect task and silently kills the bot, so every builder here emits every field Discord does.

Overview (details in each docstring):

* world: ``add_guild / add_role / add_channel / set_overwrite / add_member / add_user / dm_channel``;
  changes made after the client connected are dispatched (GUILD_CREATE, CHANNEL_CREATE, ...).
* gateway: ``send_message / send_dm / send_message_update / send_reaction_add /
  send_reaction_remove / send_interaction / send_guild_delete / dispatch``; ``disconnect_gateway``,
  ``gateway_offline()``, ``send_reconnect``, ``invalidate_session``; ``refuse_privileged``.
* REST record: ``calls`` / ``calls_matching``; message model: ``messages / bot_messages / bot_contents /
  content_history / get_message``; ``interactions``; ``commands``.
* shards, as on Discord: ``recommended_shards`` / ``max_concurrency`` (``GET /gateway/bot``); each IDENTIFY's
  ``shard`` opens that shard's session, a guild's events go to its shard only, DMs to shard 0;
  ``identified_shards / connected_shards / shard_events``; controls take ``shard=`` (default 0).
* attachments: ``send_message(..., attachments=[{"filename", "content", "content_type"?, "url"?, "size"?}])``
  dispatches Discord's attachment objects; the files are served on the fake's port as the CDN serves them
  (``hosting``: per-path faults, redirects, stalls); ``file_downloads`` records every download request.
* faults and load: ``fail_next``, ``latency``, ``enforce_rate_limits``, ``enforce_permissions``.
* waiting: ``wait_for / wait_for_call / wait_connected``; glue: ``redirect_discordpy``, ``running_client``.

Modules: ``records`` (constants and what tests read), ``state`` (world, lifecycle, waiting), ``gateway``,
``rest``, ``payloads`` (wire shapes and the message model), ``glue`` (discord.py redirection).
"""

from __future__ import annotations

from .gateway import Gateway
from .glue import redirect_discordpy, running_client
from .payloads import Payloads
from .records import FailRule, GatewayFrame, Intent, InteractionRecord, Perm, RestCall
from .rest import RestApi
from .state import DiscordState

__all__ = [
    "FakeDiscord",
    "RestCall",
    "FailRule",
    "GatewayFrame",
    "InteractionRecord",
    "Perm",
    "Intent",
    "redirect_discordpy",
    "running_client",
]


class FakeDiscord(RestApi, Gateway, Payloads, DiscordState):
    """Fake Discord REST + gateway server on 127.0.0.1 with a random port.

    Typical use::

        async with FakeDiscord() as fake:
            fake.add_guild(1, "Guild")
            fake.add_channel(1, 10, "general")
            fake.add_member(1, 42, "alice")
            with redirect_discordpy(fake):
                client = discord.Client(intents=..., guild_ready_timeout=0.1)
                async with running_client(fake, client):
                    await fake.send_message(10, 42, "hello", mentions_bot=True)
    """
