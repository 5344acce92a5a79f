"""Discord's `chatbots doctor` check: the bot token logs in, and the message content intent is on (without the gateway)."""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

from chatbots.checks import OK, SKIPPED, Check, CheckFailed, Row, describe, safe_url
from chatbots.config import ConfigError, Config

from .connection import Endpoints, build_client

DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)
"""Application flags GATEWAY_MESSAGE_CONTENT and GATEWAY_MESSAGE_CONTENT_LIMITED: either means the intent is on."""


def checks(settings: Config, timeout: float) -> list[Check]:
    return [Check("discord", lambda: discord_check(settings, timeout),
                  "check that DISCORD_API_URL (or discord.com) is reachable from here")]


async def discord_check(settings: Config, timeout: float) -> Row:
    if not settings.discord_bot_token:
        return Row("discord", SKIPPED, "DISCORD_BOT_TOKEN not set")
    try:
        endpoints = Endpoints.from_settings(settings)
    except ConfigError as error:
        raise CheckFailed(str(error).split(", got")[0], "fix the URL in DISCORD_API_URL / DISCORD_GATEWAY_URL") from None
    endpoints.apply()
    client = build_client()
    try:
        try:
            await client.login(settings.discord_bot_token)
        except discord.LoginFailure:
            raise CheckFailed("DISCORD_BOT_TOKEN was refused (401 Unauthorized)",
                              "copy DISCORD_BOT_TOKEN again from the Developer Portal (Bot > Reset Token)") from None
        except discord.HTTPException as error:
            raise CheckFailed(f"{safe_url(endpoints.api)} answered {error.status} to the login",
                              "check DISCORD_API_URL (unset means Discord's own) and Discord's status") from None
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as error:
            raise CheckFailed(f"cannot reach the Discord API at {safe_url(endpoints.api)} ({describe(error)})",
                              "check DISCORD_API_URL (unset means Discord's own) and the network") from None
        user = client.user
        who = f"bot {user.name} ({user.id})" if user else "logged in"
        try:
            app: Any = client.application or await client.application_info()
        except (discord.HTTPException, aiohttp.ClientError):
            return Row("discord", OK, f"{who}; message content intent: unknown (no application info)")
        flags = getattr(getattr(app, "flags", None), "value", None)
        if flags is None:
            return Row("discord", OK, f"{who}; message content intent: unknown")
        if not flags & DISCORD_MESSAGE_CONTENT:
            raise CheckFailed(f"{who}; the message content intent is off",
                              "enable MESSAGE CONTENT INTENT in the Discord Developer Portal (Bot > Privileged Gateway "
                              "Intents); without it the gateway refuses the bot")
        return Row("discord", OK, f"{who}; message content intent enabled")
    finally:
        await client.close()
        endpoints.restore()
