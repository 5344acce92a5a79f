"""`/chatbot` as Discord application commands: typed options, translated into the core's one command grammar."""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands

from chatbots.commands import Caller, Commands
from chatbots.paging import split_message
from chatbots.types import Outcome

from ..service import Observer
from .governance import add_governance
from .events import conversation_key

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000

def caller_of(interaction: discord.Interaction) -> Caller:
    """Admins are members with Manage Server; in DMs (a space shared by everyone) only CHATBOTS_ADMINS count."""
    is_admin = interaction.guild_id is not None and interaction.permissions.manage_guild
    return Caller(conversation_key(interaction), str(interaction.user.id), is_admin)


def build_tree(client: discord.Client, commands: Commands, observe: Observer) -> app_commands.CommandTree:
    tree = app_commands.CommandTree(client)
    group = app_commands.Group(name="chatbot", description="Config, usage and help for the chat bot")

    async def answer(interaction: discord.Interaction, text: str) -> None:
        # Defer at once (Discord allows 3 s), privately; the answer follows.
        await interaction.response.defer(ephemeral=True, thinking=True)
        reply = await commands.run(caller_of(interaction), text)
        for part in split_message(reply, MESSAGE_LIMIT):
            await interaction.followup.send(part, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        observe(Outcome.COMMAND)

    def command(name: str, description: str) -> Any:
        return group.command(name=name, description=description)

    @command("help", "What the bot does here and the commands you can use")
    async def help_(interaction: discord.Interaction) -> None:
        await answer(interaction, "help")

    @command("instructions", "Show or change the system instructions (workspace or this channel)")
    @app_commands.describe(action="show (default), set or clear", text="the new instructions, for set",
                           scope="the whole server (default) or only this channel")
    async def instructions(
        interaction: discord.Interaction,
        action: Literal["show", "set", "clear"] = "show",
        text: str | None = None,
        scope: Literal["server", "channel"] = "server",
    ) -> None:
        words = ["instructions"] + (["channel"] if scope == "channel" else [])
        if action != "show":
            words.append(action)
        if action == "set" and text:
            words.append(text)
        await answer(interaction, " ".join(words))

    @command("model", "Show the model, or set another one (for the server or this channel)")
    @app_commands.describe(name="the model to use from now on (leave empty to see the current one)",
                           scope="the whole server (default) or only this channel", clear="channel: use the server's again")
    async def model(
        interaction: discord.Interaction, name: str | None = None,
        scope: Literal["server", "channel"] = "server", clear: bool = False,
    ) -> None:
        if scope == "channel":
            await answer(interaction, "model channel clear" if clear else f"model channel set {name}" if name else "model channel")
        else:
            await answer(interaction, f"model set {name}" if name else "model")

    @command("limit", "Set a daily token cap (per person or server) or a per-minute request limit; 0 = none")
    @app_commands.describe(kind="user: tokens per person a day; workspace: tokens for the server a day; "
                           "rate: requests per person a minute", value="the limit, 0 for none")
    async def limit(
        interaction: discord.Interaction,
        kind: Literal["user", "workspace", "rate"],
        value: app_commands.Range[int, 0, 10**12],
    ) -> None:
        await answer(interaction, f"limit {kind} {value}")

    @command("limits", "The limits in force")
    async def limits(interaction: discord.Interaction) -> None:
        await answer(interaction, "limits")

    @command("usage", "Tokens and estimated cost; your own allowance")
    async def usage(interaction: discord.Interaction) -> None:
        await answer(interaction, "usage")

    @command("moderation", "Show moderation, or turn it on or off for this server")
    async def moderation(interaction: discord.Interaction, state: Literal["on", "off"] | None = None) -> None:
        await answer(interaction, f"moderation {state}" if state else "moderation")

    @command("forget", "Erase the stored history of this channel or thread")
    async def forget(interaction: discord.Interaction) -> None:
        await answer(interaction, "forget")

    add_governance(group, answer)
    tree.add_command(group)

    @tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.warning("/chatbot failed: %s", type(getattr(error, "original", error)).__name__)
        observe(Outcome.COMMAND_ERROR)
        message = "Something went wrong running that command. Please try again."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(message, ephemeral=True)
            else:
                await interaction.response.send_message(message, ephemeral=True)
        except discord.HTTPException:
            pass

    return tree
