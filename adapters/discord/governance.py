"""`/chatbot` cost and access commands as Discord application commands, translated into the core's grammar."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import discord
from discord import app_commands

Answer = Callable[[discord.Interaction, str], Awaitable[None]]


def add_governance(group: app_commands.Group, answer: Answer) -> None:
    @group.command(name="budget", description="Spend against the budgets; admins set a USD budget (0 = none)")
    @app_commands.describe(scope="which budget to set (leave empty to see spend)", usd="USD, like 25 or 12.50; 0 removes it")
    async def budget(
        interaction: discord.Interaction,
        scope: Literal["workspace month", "workspace day", "user day"] | None = None,
        usd: app_commands.Range[str, 1, 16] | None = None,
    ) -> None:
        await answer(interaction, f"budget {scope} {usd}" if scope and usd is not None else "budget")

    @group.command(name="fallback", description="A cheaper model once an allowance is used (off: refuse instead)")
    @app_commands.describe(model="the fallback model, or off (leave empty to see it)")
    async def fallback(interaction: discord.Interaction, model: app_commands.Range[str, 1, 200] | None = None) -> None:
        await answer(interaction, f"fallback {model}" if model else "fallback")

    @group.command(name="alerts", description="Where admins are told at 50/80/100 % of a budget or cap")
    async def alerts(interaction: discord.Interaction, where: Literal["here", "off"] | None = None) -> None:
        await answer(interaction, f"alerts {where}" if where else "alerts")

    @group.command(name="channel", description="Whether the bot answers in this channel")
    async def channel(interaction: discord.Interaction, state: Literal["on", "off"] | None = None) -> None:
        await answer(interaction, f"channel {state}" if state else "channel")

    @group.command(name="channels", description="Answer only in channels switched on, or everywhere not switched off")
    async def channels(interaction: discord.Interaction, mode: Literal["only", "all"]) -> None:
        await answer(interaction, f"channels {mode}")

    @group.command(name="dms", description="Whether people may talk to the bot in direct messages")
    async def dms(interaction: discord.Interaction, state: Literal["on", "off"] | None = None) -> None:
        await answer(interaction, f"dms {state}" if state else "dms")

    @group.command(name="users", description="Only some people (or roles) may use the bot, or everyone")
    @app_commands.describe(mode="only: these people and roles; all: everyone", people="mentions of people and roles")
    async def users(
        interaction: discord.Interaction, mode: Literal["only", "all"] | None = None,
        people: app_commands.Range[str, 1, 4000] | None = None,
    ) -> None:
        text = "users" if mode is None else "users all" if mode == "all" else f"users only {people or ''}"
        await answer(interaction, text.strip())

    @group.command(name="why", description="The instructions, model, caps and budgets that apply to you here")
    async def why(interaction: discord.Interaction) -> None:
        await answer(interaction, "why")
