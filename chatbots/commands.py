"""The `/chatbot` command, once for every platform: parse the text, check who may do it, act, say what changed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from .engine import Engine
from .limits import MAX_CAP, MAX_RATE, direct_caps, is_direct, parse_count
from .pricing import PriceList, parse_prices
from .prompt import DEFAULT_INSTRUCTIONS, system_instructions
from . import suggested
from .types import ConversationKey

MAX_INSTRUCTIONS = 8_000
"""Characters of system instructions: enough for a detailed brief, small enough to leave room for the thread."""
MODEL_LIST_TIMEOUT = 2.0
"""Seconds to wait for the model server's list; commands must answer within the platforms' 3 s."""
TOKENIZER_WAIT = 1.5
"""Seconds a command waits for the tokenizer to check instructions against the model's window."""
MIN_CONVERSATION_ROOM = 256
"""Tokens the instructions must leave for the conversation itself; with less they are refused."""

USAGE = {
    "help": "`help` — what I do here and the commands you can use",
    "instructions": "`instructions` · `instructions set TEXT` · `instructions clear` · "
    "`instructions channel` · `instructions channel set TEXT` · `instructions channel clear`",
    "model": "`model` · `model set NAME`",
    "limit": "`limit user N` · `limit workspace N` (daily tokens, 0 = none) · `limit rate N` (requests per user per minute)",
    "limits": "`limits` — the caps in force",
    "usage": "`usage` — tokens and estimated cost, top users, your own allowance",
    "moderation": "`moderation` · `moderation on` · `moderation off`",
    "forget": "`forget` — erase the stored history of this thread (or channel)",
    "prompts": "`prompts` · `prompts set TITLE = MESSAGE | TITLE = MESSAGE ...` (up to 4) · `prompts clear`",
}
READER_USAGE = {
    "help": USAGE["help"],
    "instructions": "`instructions` · `instructions channel` — the instructions in force here",
    "limits": USAGE["limits"],
    "usage": "`usage` — your own usage and what you have left today",
    "forget": "`forget` (in a Discord thread you took part in) — erase that thread's stored history",
    "prompts": "`prompts` — the suggested prompts the assistant panel offers",
}
ADMIN_ONLY_NOTE = "Only workspace admins can change that. Ask an admin, or see `help` for what you can do."


@dataclass(frozen=True, slots=True)
class Caller:
    """Who typed the command, and where."""

    key: ConversationKey
    user_id: str
    is_admin: bool
    """What the platform says (Slack admin/owner, Discord Manage Server); CHATBOTS_ADMINS is added here."""


class CommandError(Exception):
    """Bad command text: the message is a usage line for the person."""


def _number(word: str, what: str, maximum: int) -> int:
    """A number typed in a command: ASCII digits only, at most maximum, else a clear error."""
    if word.isascii() and word.isdigit():
        value = parse_count(word, maximum)
        if value is None:
            raise CommandError(f"{what} can be at most {maximum:,}. Nothing was changed.")
        return value
    raise CommandError(f"{what} needs a whole number of 0 or more in digits 0-9, like `limit user 50000`.\n{USAGE['limit']}")


def _mention(key: ConversationKey, user_id: str) -> str:
    return f"<@{user_id}>" if key.platform in ("slack", "discord") else user_id


class Commands:
    def __init__(self, engine: Engine, prices: PriceList) -> None:
        self.engine = engine
        self.store = engine.store
        self.prices = prices

    @classmethod
    def for_engine(cls, engine: Engine) -> Commands:
        return cls(engine, PriceList(parse_prices(engine.config.prices)))

    def is_admin(self, caller: Caller) -> bool:
        return caller.is_admin or caller.user_id in self.engine.config.admins

    async def run(self, caller: Caller, text: str) -> str:
        """The answer to show the caller (privately). Nothing changes unless the answer says so."""
        words = text.strip().split(maxsplit=1)
        if not words:
            return self.help(caller)
        name, rest = words[0].lower(), (words[1] if len(words) > 1 else "")
        handlers = {
            "help": self.help_command, "instructions": self.instructions, "model": self.model,
            "limit": self.limit, "limits": self.limits, "usage": self.usage,
            "moderation": self.moderation, "forget": self.forget,
        }
        handlers["prompts"] = self.prompts
        handler = handlers.get(name)
        if handler is None:
            return f"I don't know `{name[:40]}`. Here is what I can do:\n\n{self.help(caller)}"
        try:
            return await handler(caller, rest.strip())
        except CommandError as error:
            return str(error)

    def _require_admin(self, caller: Caller) -> None:
        if not self.is_admin(caller):
            raise CommandError(ADMIN_ONLY_NOTE)

    async def _workspace(self, caller: Caller) -> int:
        return await self.store.workspace_id(caller.key.platform, caller.key.workspace)

    async def _settings(self, caller: Caller) -> dict[str, str]:
        return await self.store.settings_for(caller.key)

    async def _change(self, caller: Caller, name: str, value: str | None, channel: str = "") -> str | None:
        return await self.store.set_setting_audited(await self._workspace(caller), name, value, actor_id=caller.user_id, channel=channel)

    def help(self, caller: Caller) -> str:
        allowed = USAGE if self.is_admin(caller) else READER_USAGE
        lines = [
            "I answer questions with an AI model, using the context of the thread (or channel) I'm asked in. "
            "Mention me to ask something.",
            "",
            "Commands (`/chatbot ...`):",
            *(f"• {line}" for line in allowed.values()),
        ]
        if not self.is_admin(caller):
            lines.append("Admins can also change instructions, the model, limits and moderation.")
        return "\n".join(lines)

    async def help_command(self, caller: Caller, rest: str) -> str:
        return self.help(caller)

    async def instructions(self, caller: Caller, rest: str) -> str:
        words = rest.split(maxsplit=1)
        verb = words[0].lower() if words else ""
        if verb == "channel":
            return await self._channel_instructions(caller, words[1] if len(words) > 1 else "")
        settings = await self._settings(caller)
        if not verb:
            current = settings.get("instructions")
            shown = f"This workspace's instructions:\n>>> {current}" if current else (
                f"This workspace uses the default instructions:\n>>> {self.engine.config.default_instructions or DEFAULT_INSTRUCTIONS}"
            )
            channel = settings.get("channel_instructions")
            return shown + (f"\n\nThis channel adds:\n>>> {channel}" if channel else "")
        if verb == "set":
            self._require_admin(caller)
            text = words[1].strip() if len(words) > 1 else ""
            self._check_instructions(text)
            room = await self._room_left(caller, {**settings, "instructions": text})
            old = await self._change(caller, "instructions", text)
            return "Workspace instructions updated" + (" (they replace the previous ones)." if old else ".") + room + f"\n>>> {text}"
        if verb == "clear":
            self._require_admin(caller)
            old = await self._change(caller, "instructions", None)
            return "Workspace instructions cleared; the default ones apply again." if old else "There were no workspace instructions to clear."
        raise CommandError(f"Usage: {USAGE['instructions']}")

    async def _channel_instructions(self, caller: Caller, rest: str) -> str:
        words = rest.split(maxsplit=1)
        verb = words[0].lower() if words else ""
        channel = caller.key.channel
        if not verb:
            current = (await self._settings(caller)).get("channel_instructions")
            return f"This channel adds:\n>>> {current}" if current else "This channel has no instructions of its own."
        self._require_admin(caller)
        if verb == "set":
            text = words[1].strip() if len(words) > 1 else ""
            self._check_instructions(text)
            room = await self._room_left(caller, {**(await self._settings(caller)), "channel_instructions": text})
            await self._change(caller, "instructions", text, channel=channel)
            return f"Channel instructions set; they apply here after the workspace's.{room}\n>>> {text}"
        if verb == "clear":
            old = await self._change(caller, "instructions", None, channel=channel)
            return "Channel instructions cleared." if old else "This channel had no instructions to clear."
        raise CommandError(f"Usage: {USAGE['instructions']}")

    def _check_instructions(self, text: str) -> None:
        if not text:
            raise CommandError("Give the instructions after `set`, like `instructions set Answer in French.`")
        if len(text) > MAX_INSTRUCTIONS:
            raise CommandError(
                f"Those instructions are {len(text):,} characters; the limit is {MAX_INSTRUCTIONS:,}. "
                "Shorten them and try again — nothing was changed."
            )

    async def _room_left(self, caller: Caller, settings: dict[str, str]) -> str:
        """A note to add when these settings' instructions leave the conversation under a quarter of the model's
        window ("" when they leave enough); raises CommandError when they surely leave it almost nothing."""
        model = settings.get("model") or self.engine.config.model
        instructions = system_instructions(settings, self.engine.config.default_instructions)
        room, context, exact = await self.engine.conversation_room(model, instructions, TOKENIZER_WAIT)
        if room >= context // 4:
            return ""
        if not exact:  # the tokenizer was slow to load: a bound cannot justify refusing
            return (
                f"\nNote: by a rough count the instructions in force here may leave less than a quarter of `{model}`'s "
                f"{context:,}-token window for the conversation; if so, answers will see little of the thread's history."
            )
        if room < MIN_CONVERSATION_ROOM:
            raise CommandError(
                f"With those instructions `{model}` would have {max(room, 0):,} of its {context:,}-token window left for "
                "the conversation and the question, too little to answer anything. Shorten them. Nothing was changed."
            )
        return (
            f"\nNote: the instructions in force here leave {room:,} of `{model}`'s {context:,}-token window for the "
            "conversation, less than a quarter: answers will see little of the thread's history."
        )

    async def model(self, caller: Caller, rest: str) -> str:
        words = rest.split()
        current = (await self._settings(caller)).get("model") or self.engine.config.model
        if not words:
            return f"Model: `{current}`"
        if words[0].lower() != "set" or len(words) != 2:
            raise CommandError(f"Usage: {USAGE['model']}")
        self._require_admin(caller)
        name = words[1]
        if len(name) > 200:
            raise CommandError("That is not a model name.")
        offered = await self._offered_models()
        if offered is not None and name not in offered:
            listed = ", ".join(f"`{m}`" for m in sorted(offered)[:20])
            raise CommandError(f"The model server doesn't offer `{name}`. It offers: {listed}. Nothing was changed.")
        room = await self._room_left(caller, {**(await self._settings(caller)), "model": name})
        old = await self._change(caller, "model", name)
        return f"Model changed from `{old or self.engine.config.model}` to `{name}`.{room}"

    async def _offered_models(self) -> set[str] | None:
        lister = getattr(self.engine.model, "list_models", None)
        if lister is None:
            return None
        try:
            async with asyncio.timeout(MODEL_LIST_TIMEOUT):
                found = await lister()
        except TimeoutError:
            return None
        return set(found) if found else None

    async def limit(self, caller: Caller, rest: str) -> str:
        words = rest.split()
        if len(words) != 2 or words[0].lower() not in ("user", "workspace", "rate"):
            raise CommandError(f"Usage: {USAGE['limit']}")
        self._require_admin(caller)
        which = words[0].lower()
        value = _number(words[1], f"`limit {which}`", MAX_RATE if which == "rate" else MAX_CAP)
        old = parse_count(await self._change(caller, f"limit_{which}", str(value) if value else None), 10**100)
        what = {"user": "Daily tokens per person", "workspace": "Daily tokens for the workspace", "rate": "Requests per person per minute"}[which]
        before = f"{old:,}" if old else "no limit"
        return f"{what}: {f'{value:,}' if value else 'no limit'} (was {before})." + self._operator_note(caller)

    def _operator_note(self, caller: Caller) -> str:
        """In DMs, the operator's caps (CHATBOTS_DM_LIMIT_*) apply too, whatever admins set here."""
        operator = direct_caps(self.engine.config)
        if not is_direct(caller.key) or not (operator.user_daily or operator.per_minute):
            return ""
        parts = [f"{operator.user_daily:,} tokens per person a day"] if operator.user_daily else []
        parts += [f"{operator.per_minute:,} requests per person a minute"] if operator.per_minute else []
        return f"\nIn direct messages the bot's operator also allows at most {' and '.join(parts)}; the stricter limit applies."

    async def limits(self, caller: Caller, rest: str) -> str:
        caps = await self.engine.caps(caller.key)

        def shown(value: int, unit: str) -> str:
            return f"{value:,} {unit}" if value else "no limit"

        return "\n".join([
            "Limits in force here (daily limits reset at midnight UTC):",
            f"• per person: {shown(caps.user_daily, 'tokens a day')}",
            f"• whole workspace: {shown(caps.workspace_daily, 'tokens a day')}",
            f"• rate: {shown(caps.per_minute, 'requests per person per minute')}",
        ]) + self._operator_note(caller)

    async def usage(self, caller: Caller, rest: str) -> str:
        key = caller.key
        now = self.store.clock()
        today = now.date().isoformat()
        since = (now.date() - timedelta(days=29)).isoformat()
        rows = await self.store.usage_rows(since, (key.platform, key.workspace))
        admin = self.is_admin(caller)

        def total(selected: list[dict]) -> tuple[int, float]:
            tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in selected)
            cost = sum(self.prices.cost(r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in selected)
            return tokens, cost

        mine = [r for r in rows if r["user_id"] == caller.user_id]
        my_today, _ = total([r for r in mine if r["day"] == today])
        my_month, _ = total(mine)
        remaining = await self.engine.limits.remaining(await self._workspace(caller), caller.user_id, await self.engine.caps(caller.key))
        own = f"You: {my_today:,} tokens today, {my_month:,} in the last 30 days."
        own += f" You can use {remaining:,} more today." if remaining is not None else " No daily cap applies to you."
        if not admin:
            return own
        day_tokens, day_cost = total([r for r in rows if r["day"] == today])
        month_tokens, month_cost = total(rows)
        per_user: dict[str, int] = {}
        for r in rows:
            per_user[r["user_id"]] = per_user.get(r["user_id"], 0) + r["prompt_tokens"] + r["completion_tokens"]
        top = sorted(per_user.items(), key=lambda item: -item[1])[:5]
        up, down = await self.store.feedback_totals(await self._workspace(caller), since + "T00:00:00")
        lines = [
            "Usage in this workspace (estimated cost from list prices):",
            f"• today: {day_tokens:,} tokens (~${day_cost:,.2f})",
            f"• last 30 days: {month_tokens:,} tokens (~${month_cost:,.2f})",
        ]
        if top:
            lines.append("• top users (30 days): " + ", ".join(f"{_mention(key, u)} {t:,}" for u, t in top))
        votes = up + down
        lines.append(
            f"• feedback (30 days): 👍 {up} · 👎 {down}" + (f" ({up * 100 // votes}% positive)" if votes else "")
        )
        lines.append(own)
        return "\n".join(lines)

    async def moderation(self, caller: Caller, rest: str) -> str:
        word = rest.lower()
        current = (await self._settings(caller)).get("moderation", "on")
        if not word:
            return f"Moderation is {current} in this workspace."
        if word not in ("on", "off"):
            raise CommandError(f"Usage: {USAGE['moderation']}")
        self._require_admin(caller)
        await self._change(caller, "moderation", word)
        return f"Moderation is now {word} in this workspace (was {current})."

    async def forget(self, caller: Caller, rest: str) -> str:
        key = caller.key
        is_thread = key.thread != key.channel
        if not self.is_admin(caller) and not (is_thread and await self.store.is_participant(key, caller.user_id)):
            raise CommandError("Only admins, or people who took part in this thread, can erase its history.")
        if is_thread:
            removed = await self.store.forget_conversation(key)
            return f"Erased this thread's stored history ({removed} messages). I'll start fresh here."
        removed = await self.store.forget_channel(key.platform, key.workspace, key.channel)
        return f"Erased this channel's stored history ({removed} messages). I'll start fresh here."

    async def prompts(self, caller: Caller, rest: str) -> str:
        """The assistant panel's suggested prompts: shown to anyone, replaced or restored by admins (audited)."""
        verb, _, text = rest.partition(" ")
        verb = verb.lower()
        if not verb:
            stored = await self._settings(caller)
            which = "This workspace's" if stored.get(suggested.SETTING) else "The default"
            return f"{which} suggested prompts:\n{suggested.describe(suggested.from_settings(stored))}"
        if verb == "set":
            self._require_admin(caller)
            try:
                prompts = suggested.parse_prompts(text)
            except suggested.PromptsError as error:
                raise CommandError(f"{error} Nothing was changed.\nUsage: {USAGE['prompts']}") from None
            await self._change(caller, suggested.SETTING, suggested.to_setting(prompts))
            return f"Suggested prompts updated (new assistant threads show them):\n{suggested.describe(prompts)}"
        if verb == "clear":
            self._require_admin(caller)
            old = await self._change(caller, suggested.SETTING, None)
            return "Suggested prompts cleared; the defaults apply again." if old else "The default prompts were already in use."
        raise CommandError(f"Usage: {USAGE['prompts']}")
