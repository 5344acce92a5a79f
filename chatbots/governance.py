"""`/chatbot` commands for cost and access: budgets, the fallback model, alerts, a channel's model, where and for
whom the bot answers, and `why` (what applies here and where it came from). Admins change; everyone may read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .access import channel_answered, parse_allowed
from .budgets import MAX_BUDGET, SETTINGS, Budgets, parse_amount, usd
from .commands import Caller, CommandError
from .limits import is_direct
from .prompt import DEFAULT_INSTRUCTIONS
from .types import ConversationKey

if TYPE_CHECKING:
    from .commands import Commands

USAGE = {
    "budget": "`budget` · `budget workspace month N` · `budget workspace day N` · `budget user day N` (USD, 0 = none)",
    "fallback": "`fallback` · `fallback MODEL` · `fallback off` (a cheaper model once an allowance is used, up to twice it)",
    "alerts": "`alerts` · `alerts here` · `alerts off` (told here at 50/80/100 % of a workspace budget or cap)",
    "model channel": "`model channel` · `model channel set NAME` · `model channel clear`",
    "channel": "`channel` · `channel off` · `channel on` · `channels only` · `channels all`",
    "dms": "`dms` · `dms off` · `dms on`",
    "users": "`users` · `users only @a @b ...` · `users all`",
    "why": "`why` — the instructions, model, caps and budgets that apply to you here, and where they came from",
}
READER_USAGE = {
    "budget": "`budget` — spend against the budgets in force",
    "why": USAGE["why"],
}
SCOPES = {("workspace", "month"): "workspace_month", ("workspace", "day"): "workspace_day", ("user", "day"): "user_day"}
BUDGET_NAMES = {"workspace_month": "the workspace this month", "workspace_day": "the workspace today",
                "user_day": "each person today"}

Handler = Callable[[Caller, str], Awaitable[str]]


def _percent(spent: float, budget: float) -> str:
    return f"{spent * 100 / budget:.0f} %"


class Governance:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.engine = commands.engine

    def handlers(self) -> dict[str, Handler]:
        return {"budget": self.budget, "fallback": self.fallback, "alerts": self.alerts, "channel": self.channel,
                "channels": self.channels, "dms": self.dms, "users": self.users, "why": self.why}

    def usage_lines(self, admin: bool) -> list[str]:
        return list((USAGE if admin else READER_USAGE).values())

    async def budget(self, caller: Caller, rest: str) -> str:
        words = rest.lower().split()
        if not words:
            return await self._budget_shown(caller)
        scope = SCOPES.get((words[0], words[1])) if len(words) == 3 else None
        if scope is None:
            raise CommandError(f"Usage: {USAGE['budget']}")
        self.commands._require_admin(caller)
        words[2] = words[2].removeprefix("$")  # `$12.50` is how people write an amount in USD
        amount = parse_amount(words[2])
        if amount is None:
            raise CommandError(f"A budget is an amount in USD like `25` or `12.50`, at most {MAX_BUDGET:,.0f}. "
                               "Nothing was changed.")
        value = None if amount == 0 else words[2]
        old = parse_amount(await self.commands._change(caller, SETTINGS[scope], value))
        shown = usd(amount) if amount else "no budget"
        return (f"Budget for {BUDGET_NAMES[scope]}: {shown} (was {usd(old) if old else 'no budget'}). "
                "Cost is estimated from list prices (or CHATBOTS_PRICES), and reserved before each answer."
                + (self._unpriced_note(await self.commands._settings(caller)) if amount else ""))

    def _unpriced_note(self, settings: dict[str, str]) -> str:
        """A budget cannot hold back a model without a price (it costs nothing): say so where one is set."""
        models = dict.fromkeys(name for name in (settings.get("channel_model"), settings.get("model") or
                                                 self.engine.config.model, settings.get("fallback_model")) if name)
        unpriced = [name for name in models if self.commands.prices.price(name) is None]
        if not unpriced:
            return ""
        return ("\nNote: " + ", ".join(f"`{name}`" for name in unpriced) + " has no price, so it costs nothing "
                "against budgets; the operator can price it with CHATBOTS_PRICES.")

    async def _budget_shown(self, caller: Caller) -> str:
        settings = await self.commands._settings(caller)
        budgets = Budgets.from_settings(settings)
        spend = await self.engine.limits.spend(await self.commands._workspace(caller), caller.user_id)
        rows = [("the workspace this month", spend.workspace_month, budgets.workspace_month),
                ("the workspace today", spend.workspace_day, budgets.workspace_day),
                ("you today", spend.user_day, budgets.user_day)]
        lines = ["Spend in USD, estimated from prices (days reset at midnight UTC, months on the 1st):"]
        for name, spent, budget in rows:
            against = f"{usd(spent)} of {usd(budget)} ({_percent(spent, budget)})" if budget else f"{usd(spent)}, no budget"
            lines.append(f"• {name}: {against}")
        lines.append(self._fallback_line(settings))
        return "\n".join(lines) + (self._unpriced_note(settings) if budgets.any else "")

    @staticmethod
    def _fallback_line(settings: dict[str, str]) -> str:
        fallback = settings.get("fallback_model")
        if not fallback:
            return "Fallback model: none (over an allowance, requests are refused)."
        return f"Fallback model: `{fallback}` once an allowance is used, up to twice the allowance."

    async def fallback(self, caller: Caller, rest: str) -> str:
        words = rest.split()
        settings = await self.commands._settings(caller)
        if not words:
            return self._fallback_line(settings)
        if len(words) != 1 or len(words[0]) > 200:
            raise CommandError(f"Usage: {USAGE['fallback']}")
        self.commands._require_admin(caller)
        if words[0].lower() == "off":
            old = await self.commands._change(caller, "fallback_model", None)
            return "Fallback model off: over an allowance, requests are refused." + (f" (was `{old}`)" if old else "")
        name = words[0]
        offered = await self.commands._offered_models()
        if offered is not None and name not in offered:
            listed = ", ".join(f"`{m}`" for m in sorted(offered)[:20])
            raise CommandError(f"The model server doesn't offer `{name}`. It offers: {listed}. Nothing was changed.")
        await self.commands._change(caller, "fallback_model", name)
        return (f"Fallback model: `{name}`. Once a person or the workspace has used an allowance (tokens or money), "
                "I answer with it, up to twice the allowance; then I refuse.")

    async def alerts(self, caller: Caller, rest: str) -> str:
        word = rest.strip().lower()
        current = (await self.commands._settings(caller)).get("alerts_channel")
        if not word:
            return f"Budget alerts go to <#{current}>." if current else "Budget alerts are off."
        if word not in ("here", "off"):
            raise CommandError(f"Usage: {USAGE['alerts']}")
        self.commands._require_admin(caller)
        if word == "off":
            await self.commands._change(caller, "alerts_channel", None)
            return "Budget alerts are off."
        await self.commands._change(caller, "alerts_channel", caller.key.channel)
        return ("Budget alerts will be posted here, once each, when the workspace reaches 50 %, 80 % and 100 % of a "
                "workspace budget or token cap in the current day or month.")

    async def channel_model(self, caller: Caller, words: list[str]) -> str:
        """`model channel ...`, reached from the `model` command."""
        settings = await self.commands._settings(caller)
        here = settings.get("channel_model")
        if not words:
            workspace = settings.get("model") or self.engine.config.model
            return f"This channel uses `{here}`." if here else f"This channel uses the workspace's model, `{workspace}`."
        verb = words[0].lower()
        self.commands._require_admin(caller)
        if verb == "clear" and len(words) == 1:
            old = await self.commands._change(caller, "model", None, channel=caller.key.channel)
            return "This channel uses the workspace's model again." if old else "This channel had no model of its own."
        if verb != "set" or len(words) != 2 or len(words[1]) > 200:
            raise CommandError(f"Usage: {USAGE['model channel']}")
        name = words[1]
        offered = await self.commands._offered_models()
        if offered is not None and name not in offered:
            listed = ", ".join(f"`{m}`" for m in sorted(offered)[:20])
            raise CommandError(f"The model server doesn't offer `{name}`. It offers: {listed}. Nothing was changed.")
        room = await self.commands._room_left(caller, {**settings, "channel_model": name, "model": name})
        await self.commands._change(caller, "model", name, channel=caller.key.channel)
        return f"This channel now uses `{name}`, over the workspace's model.{room}"

    async def channel(self, caller: Caller, rest: str) -> str:
        word = rest.strip().lower()
        if is_direct(caller.key):
            raise CommandError("This is a direct message; use `dms on` or `dms off`.")
        settings = await self.commands._settings(caller)
        if not word:
            answered = channel_answered(caller.key, settings)
            mode = "only channels switched on" if settings.get("channels") == "only" else "every channel not switched off"
            return f"I {'answer' if answered else 'do not answer'} in this channel (I answer in {mode})."
        if word not in ("on", "off"):
            raise CommandError(f"Usage: {USAGE['channel']}")
        self.commands._require_admin(caller)
        await self.commands._change(caller, "answer", word, channel=caller.key.channel)
        if word == "off":
            return "I no longer answer in this channel; a mention gets one short private note at most."
        return "I answer in this channel."

    async def channels(self, caller: Caller, rest: str) -> str:
        word = rest.strip().lower()
        if word not in ("only", "all"):
            raise CommandError(f"Usage: {USAGE['channel']}")
        self.commands._require_admin(caller)
        await self.commands._change(caller, "channels", "only" if word == "only" else None)
        if word == "only":
            return "I now answer only in channels switched on with `channel on` (direct messages follow `dms`)."
        return "I now answer in every channel except those switched off."

    async def dms(self, caller: Caller, rest: str) -> str:
        word = rest.strip().lower()
        discord = caller.key.platform == "discord"
        dm_space = ConversationKey("discord", "dm", caller.key.channel, caller.key.channel)
        target = Caller(dm_space, caller.user_id, caller.is_admin) if discord else caller
        current = (await self.commands._settings(target)).get("dms", "on")
        if not word:
            return f"Direct messages with me are {current}."
        if word not in ("on", "off"):
            raise CommandError(f"Usage: {USAGE['dms']}")
        if discord and caller.user_id not in self.engine.config.admins:
            # Discord DMs belong to no server: only the bot's operators (CHATBOTS_ADMINS) decide them.
            raise CommandError("On Discord, direct messages belong to no server: only the bot's operators "
                               "(CHATBOTS_ADMINS) can switch them.")
        self.commands._require_admin(caller)
        await self.commands._change(target, "dms", None if word == "on" else "off")
        return f"Direct messages with me are now {word} (were {current})."

    async def users(self, caller: Caller, rest: str) -> str:
        words = rest.split(maxsplit=1)
        verb = words[0].lower() if words else ""
        current = (await self.commands._settings(caller)).get("users")
        if not verb:
            if not current:
                return "Everyone in this workspace may use me."
            return "Only these may use me here: " + ", ".join(_shown(entry) for entry in current.split())
        if verb == "all" and len(words) == 1:
            self.commands._require_admin(caller)
            await self.commands._change(caller, "users", None)
            return "Everyone in this workspace may use me again."
        if verb != "only" or len(words) != 2:
            raise CommandError(f"Usage: {USAGE['users']}")
        self.commands._require_admin(caller)
        entries = parse_allowed(words[1])
        if entries is None:
            if caller.key.platform == "slack":  # /chatbot arrives unescaped: a typed @name is only text
                raise CommandError("Name people by member ID (`U0123ABCD`, from their profile's ⋮ menu: Copy member "
                                   "ID) or as `<@U0123ABCD>`; a typed `@name` reaches me as plain text. At most 200. "
                                   "Nothing was changed.")
            raise CommandError("Name people as mentions (`@name`) or member IDs; a role may be named too (`@role`). "
                               "At most 200. Nothing was changed.")
        if caller.user_id not in entries:
            entries.append(caller.user_id)  # an admin never locks themselves out
        await self.commands._change(caller, "users", " ".join(entries))
        return "Only these may use me here now: " + ", ".join(_shown(entry) for entry in entries)

    async def why(self, caller: Caller, rest: str) -> str:
        settings = await self.commands._settings(caller)
        config = self.engine.config
        if settings.get("channel_model"):
            model = f"`{settings['channel_model']}` (set for this channel)"
        elif settings.get("model"):
            model = f"`{settings['model']}` (set for this workspace)"
        else:
            model = f"`{config.model}` (the bot's default)"
        instructions = ("this workspace's own" if settings.get("instructions") else
                        "the bot's default" + (" (CHATBOTS_INSTRUCTIONS)" if config.default_instructions else ""))
        shown = settings.get("instructions") or config.default_instructions or DEFAULT_INSTRUCTIONS
        lines = [
            f"Here: {'I answer' if channel_answered(caller.key, settings) else 'I do not answer'} in this "
            f"{'conversation' if is_direct(caller.key) else 'channel'}"
            + (", and only certain people may use me" if settings.get("users") else "") + ".",
            f"Model: {model}.",
            f"Instructions: {instructions}" + (", then this channel's." if settings.get("channel_instructions") else "."),
            "> " + " ".join(shown[:300].split()) + ("…" if len(shown) > 300 else ""),  # one quoted line: `>>>` would quote the rest
        ]
        if settings.get("channel_instructions"):
            lines.append("This channel adds: " + " ".join(settings["channel_instructions"][:300].split()))
        lines.append(await self.commands.limits(caller, ""))
        lines.append(f"Moderation: {settings.get('moderation', 'on') if self.engine.moderator else 'off (not configured)'}.")
        return "\n".join(lines)

    async def limits_lines(self, caller: Caller) -> list[str]:
        """What `limits` adds: the money budgets and the fallback model."""
        settings = await self.commands._settings(caller)
        budgets = Budgets.from_settings(settings)

        def shown(amount: float, per: str) -> str:
            return f"{usd(amount)} {per}" if amount else f"none {per}"

        return [
            f"• budget, whole workspace: {shown(budgets.workspace_month, 'a month')}, {shown(budgets.workspace_day, 'a day')}",
            f"• budget, per person: {shown(budgets.user_day, 'a day')}",
            "• " + self._fallback_line(settings),
        ]


def _shown(entry: str) -> str:
    return f"<@&{entry[1:]}>" if entry.startswith("&") else f"<@{entry}>"
