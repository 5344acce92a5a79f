"""The conversation pipeline every platform shares: store the turn, build the prompt, stream the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from .access import barred
from .alerts import Alerts, Notify
from .attachments import FileLimits, Kind, ReadFiles, read_files
from .attachments.fitting import fit_files
from .config import Config
from .failure_log import FailureLog
from .failures import FailureKind, model_notice
from .budgets import Budgets
from .installations import Installations
from .limits import Admission, Caps, Refused, UsageLimits, caps_for
from .logs import new_turn_id
from .lru import LRU
from .metrics import Metrics
from .model import MAX_REMEMBERED_MODELS, ChatModel, Message, ModelError, has_images
from .moderation import (
    FLAGGED_INPUT_NOTICE,
    UNAVAILABLE_NOTICE,
    ModeratedReply,
    Moderator,
    Verdict,
)
from .pricing import PriceList, parse_prices
from .prompt import CANT_READ_IMAGES, IMAGE_UNREADABLE, build_messages, counted_text, labelled, system_instructions
from .reasoning import Reasoning
from .redact import redactor
from .retention import upkeep
from .store import Store
from .suggested import Prompt
from .suggested import from_settings as prompts_from
from .tokens import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    TokenCounter,
    Tokenizers,
    byte_bound,
    knows_tokenizer,
    surely_over,
)
from .types import Addressed, ConversationKey, Decision, Inbound, Reply, TurnStatus, Usage, Vote
from .window import StoredFile, StoredMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

PARTIAL_SAVE_INTERVAL = 2.0
"""Seconds between saves of a streaming answer's shown text, for recovery after a crash."""
ANSWER_LEASE_MARGIN = 10.0
"""Allowance for scheduling and clock differences between replicas when judging a lease."""
TRUNCATION_MARK = "\n\n[The rest of this message was cut: it is longer than the model can read.]"
TRUNCATION_NOTICE = "\n\n_Note: your message was too long for this model, so I only read the first part of it._"
EMPTY_NOTICE = "Your message has no text for me to answer. Ask me something!"
EMPTY_ANSWER_NOTICE = "The model sent back an empty answer. Please try rephrasing."
STORAGE_NOTICE = "I can't save messages right now (my database is unavailable), so I can't answer. An admin has been told in the logs."
INTERNAL_ERROR_NOTICE = "Something went wrong on my side while answering. Please try again."
BUSY_NOTICE = "There are too many messages waiting in this conversation; try again in a moment."
NO_ROOM_NOTICE = (
    "The instructions set for this workspace or channel fill this model's whole context window, so I can't read your "
    "message. An admin can shorten them (`/chatbot instructions`)."
)
CUT_MARGIN = 8
"""Tokens kept spare when cutting a message: pieces counted apart may merge or split where they join."""
INSTRUCTION_SIZES = 1000
"""Exact token counts of instructions kept, per (model, instructions): one per workspace or channel in use."""
MAX_WAITING_TURNS = 20
VIEWING = "viewing"
"""A per-channel setting, not audited: the channel a person's assistant conversation was last told they look at."""
VISION_OFF = "this bot is set not to read images (`CHATBOTS_VISION=off`)"
NO_VISION = ("this model can't read images (an admin can pick one that can with `/chatbot model`, "
             "or set `CHATBOTS_VISION=off`)")
NO_VISION_NOTE = ("This model can't read images, so I answered from the text alone. An admin can pick a model that "
                  "can (`/chatbot model`), or set `CHATBOTS_VISION=off`.")
IMAGE_UNREADABLE_NOTE = ("The model couldn't read the images here (damaged, or in a form it doesn't take), so I "
                         "answered from the text alone.")
IMAGE_FAILURES = (FailureKind.IMAGES_REFUSED, FailureKind.IMAGE_UNREADABLE)
"""Turns one conversation may have waiting behind the one being answered; more are turned away with BUSY_NOTICE."""


@dataclass(frozen=True, slots=True)
class SharedFiles:
    """A turn's files on their way from the question to the answer."""

    message_id: int
    files: list[StoredFile]
    """As stored and sent: images as data: URLs, text read from files, notes."""
    notes: list[str]
    """Shown with the answer, one per file not (wholly) read."""
    reply_started: bool
    """The thinking status went up before the files were fetched."""


class ConversationBusy(Exception):
    """The conversation's queue is full: the turn is refused before it is accepted."""


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What happened to one message; adapters and tests read it, people never see it."""

    status: TurnStatus
    answer: str = ""
    usage: Usage | None = None


class Engine:
    def __init__(self, store: Store, model: ChatModel, settings: Config, tokenizers: Tokenizers | None = None) -> None:
        self.store = store
        self.model = model
        self.config = settings
        self.metrics = Metrics()
        self.failures = FailureLog(self.metrics.failures)
        """Where every part of the bot reports failed calls: counted by kind, logged once per interval."""
        self.moderator = Moderator.from_settings(settings, getattr(model, "client", None))
        if self.moderator is not None:
            self.moderator.failures = self.failures
        self.redact = redactor(settings.redact)
        self.tokenizers = tokenizers if tokenizers is not None else Tokenizers()
        self._counters: dict[str, TokenCounter] = {}
        self._instruction_tokens: LRU[tuple[str, str], int] = LRU(INSTRUCTION_SIZES)
        self._queues: dict[ConversationKey, tuple[asyncio.Lock, list[int]]] = {}
        self.answer_lease = settings.stall_timeout + PARTIAL_SAVE_INTERVAL + ANSWER_LEASE_MARGIN
        """Seconds a streaming answer may go unsaved before another replica declares it cut off: a live one is
        saved at least every PARTIAL_SAVE_INTERVAL while text or reasoning flows, and waits at most the stall timeout
        for it."""
        self.prices = PriceList(parse_prices(settings.prices))
        self.limits = UsageLimits(store, store.clock, self.answer_lease, self.prices)
        self.notifiers: dict[str, Notify] = {}
        """Per platform, how to post a message in a channel (adapters register one): budget alerts go through it."""
        self.alerts = Alerts(store, self.limits, self.notifiers)
        self.installations = Installations(store)
        """Apps installed by an OAuth flow (Slack's OAuth mode): the platforms' way to them."""
        self.file_limits = FileLimits.from_settings(settings)
        self._blind: LRU[str, bool] = LRU(MAX_REMEMBERED_MODELS)
        """Models that refused image parts (CHATBOTS_VISION=auto), in this process: later turns skip images at once."""

    async def close(self) -> None:
        """Release the model's connections and the database."""
        close = getattr(self.model, "close", None)
        if close is not None:
            await close()
        if self.moderator is not None:
            await self.moderator.close()
        await self.store.close_turns()
        self.store.close()

    # -- what platforms ask of the core: adapters go through these, never through the store --

    async def first_delivery(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False when it was seen before (a retry or a redelivery).

        With the database away this cannot be known: the event goes on to its turn, which tells the person."""
        try:
            return await self.store.first_delivery(platform, event_id)
        except self.store.errors as error:
            log.warning("could not check an event for redelivery, the database is unavailable: %s", type(error).__name__)
            return True

    async def in_conversation(self, key: ConversationKey) -> bool:
        """Whether the bot is part of this conversation (has stored anything for it); unknown counts as no."""
        try:
            return await self.store.has_conversation(key)
        except self.store.errors as error:
            log.warning("could not look up a conversation, the database is unavailable: %s", type(error).__name__)
            return False

    async def answers(self, key: ConversationKey, author_id: str) -> bool:
        """Whether the access rules let this person be answered here: asked before a platform reads or posts anything
        on their behalf. An unavailable database counts as yes: the turn then fails as any other would."""
        try:
            return barred(key, author_id, (), await self.store.settings_for(key)) is None
        except self.store.errors:
            return True

    async def record_vote(self, platform: str, workspace: str, reply_id: str, user_id: str, vote: Vote | None) -> bool:
        """A person's vote on one of the bot's replies (None withdraws it); False when reply_id is not one of ours."""
        workspace_id = await self.store.workspace_id(platform, workspace)
        return await self.store.record_feedback(workspace_id, reply_id, user_id, None if vote is None else int(vote))

    async def suggested_prompts(self, platform: str, workspace: str) -> tuple[Prompt, ...]:
        """The starters an assistant panel offers in this workspace (`/chatbot prompts`), or the defaults."""
        return prompts_from(await self.store.settings_for(ConversationKey(platform, workspace, "", "")))

    async def remember_viewing(self, platform: str, workspace: str, conversation_channel: str, viewed: str | None) -> None:
        """The channel a person looks at beside their assistant conversation, kept in the database so every
        replica knows which channel "this channel" means; None forgets it."""
        workspace_id = await self.store.workspace_id(platform, workspace)
        await self.store.set_setting(workspace_id, VIEWING, viewed, channel=conversation_channel)

    async def viewing(self, platform: str, workspace: str, conversation_channel: str) -> str | None:
        found = await self.store.settings_for(ConversationKey(platform, workspace, conversation_channel, conversation_channel))
        return found.get(f"channel_{VIEWING}")

    async def erase_workspace(self, platform: str, workspace: str) -> bool:
        """Erase everything stored for a workspace: the app was uninstalled or the bot left the server."""
        return await self.store.delete_workspace(platform, workspace)

    async def database_ready(self, timeout: float = 2.0) -> bool:
        """Whether the database answers a trivial query in time (health checks route work away while it does not)."""
        unavailable: tuple[type[Exception], ...] = (TimeoutError, *self.store.errors)
        try:
            async with asyncio.timeout(timeout):
                await self.store.ping()
        except unavailable:
            return False
        return True

    @property
    def storage_errors(self) -> tuple[type[Exception], ...]:
        """What a database call raises when the database cannot be used (locked, gone, full)."""
        return self.store.errors

    async def upkeep(self, retention_days: int | None) -> int:
        """Forget old event ids, and messages older than retention_days (when set); how many messages went.
        Also logs the counts of repeated failures held back over an interval that has ended."""
        self.failures.flush()
        lease = self.answer_lease if self.store.shared else None
        return await upkeep(self.store, retention_days, lease)

    def discard(self) -> None:
        """Close the database of an engine that never served (start-up failed before any turn)."""
        self.store.close()

    def counter(self, model: str) -> TokenCounter:
        found = self._counters.get(model)
        if found is None:
            found = self._counters[model] = TokenCounter(model, self.tokenizers)
        return found

    def context_tokens(self, counter: TokenCounter) -> int:
        return self.config.context_tokens or counter.limits.context_tokens

    def output_reserve(self, context: int) -> int:
        """Room kept free for the answer when trimming history."""
        if self.config.max_output_tokens:
            return min(self.config.max_output_tokens, context // 2)
        return min(4096, context // 8)

    async def caps(self, key: ConversationKey) -> Caps:
        """The caps in force in a conversation (in DMs the operator's CHATBOTS_DM_LIMIT_* too)."""
        return caps_for(key, await self.store.settings_for(key), self.config)

    @contextlib.asynccontextmanager
    async def _in_order(self, key: ConversationKey) -> AsyncIterator[None]:
        """One turn at a time per conversation, in arrival order; other conversations run alongside.

        This orders turns within the process; Store.turn then orders them across replicas sharing a database.

        At most MAX_WAITING_TURNS wait: a flood into one conversation is turned away at the door (ConversationBusy),
        and every turn already waiting keeps its place."""
        entry = self._queues.get(key)
        if entry is None:
            entry = self._queues[key] = (asyncio.Lock(), [0])
        lock, waiting = entry
        if waiting[0] > MAX_WAITING_TURNS:  # one being answered, MAX_WAITING_TURNS behind it
            raise ConversationBusy
        waiting[0] += 1
        try:
            async with lock:
                yield
        finally:
            waiting[0] -= 1
            if waiting[0] == 0:
                del self._queues[key]

    def _instructions(self, found: dict[str, str]) -> tuple[str, str]:
        """The model and system instructions these settings give: the workspace's, then the channel's on top."""
        model = found.get("channel_model") or found.get("model") or self.config.model
        return model, system_instructions(found, self.config.default_instructions)

    def _instructions_size(self, model: str, instructions: str, counter: TokenCounter) -> int:
        cache_key = (model, instructions)
        found = self._instruction_tokens.get(cache_key)
        if found is None:
            size = counter.size(instructions)
            if not size.exact:
                return size.tokens  # cheap to bound again; only exact counts are worth keeping
            found = size.tokens
            self._instruction_tokens.put(cache_key, found)
        return found

    def _history_budget(self, model: str, instructions: str, counter: TokenCounter) -> int:
        """Tokens left for the conversation's turns once instructions and the answer's room are set aside."""
        context = self.context_tokens(counter)
        return context - self.output_reserve(context) - REPLY_PRIMING - self._instructions_size(model, instructions, counter)

    async def conversation_room(self, model: str, instructions: str, wait: float) -> tuple[int, int, bool]:
        """(tokens left for a conversation's turns under these instructions, the model's window, whether exact).

        Counted exactly when the upper bound leaves less than a quarter of the window, if the tokenizer loads
        within wait seconds (commands must answer quickly); otherwise the bound, which never overstates the room."""
        counter = self.counter(model)
        context = self.context_tokens(counter)
        room = self._history_budget(model, instructions, counter)
        if room < context // 4 and not counter.exact:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await counter.load()
            room = self._history_budget(model, instructions, counter)
        return room, context, counter.exact or room >= context // 4

    async def handle(self, message: Inbound, reply: Reply) -> TurnResult:
        new_turn_id()  # every log line of this turn, and of tasks it starts, carries it
        started = time.monotonic()
        try:
            async with self._in_order(message.key):
                try:
                    async with self.store.turn(message.key):  # and across replicas sharing the database
                        result = await self._turn(message, reply, started)
                except self.store.errors as error:
                    # A locked, full or read-only database: say so in chat and keep serving other turns.
                    log.error("database unavailable during a turn: %s", type(error).__name__)
                    self.metrics.errors.labels("storage").inc()
                    if message.addressed is not Addressed.CONTEXT:
                        await _quietly(reply.fail(STORAGE_NOTICE), "fail")
                    result = TurnResult(TurnStatus.STORAGE_ERROR)
        except ConversationBusy:
            log.info("conversation queue full; turn turned away")
            if message.addressed is not Addressed.CONTEXT:
                await _quietly(reply.fail(BUSY_NOTICE), "fail")
            result = TurnResult(TurnStatus.BUSY)
        platform = message.key.platform
        self.metrics.turns.labels(platform, result.status).inc()
        if result.status in (TurnStatus.ANSWERED, TurnStatus.FAILED, TurnStatus.FLAGGED):
            self.metrics.reply_time.labels(platform).observe(time.monotonic() - started)
        log.debug("turn %s", result.status)
        return result

    def _no_images(self, model: str) -> str | None:
        """Why images are not sent to this model, or None when they are."""
        if self.config.vision == "off":
            return VISION_OFF
        if self.config.vision == "auto" and self._blind.get(model):
            return NO_VISION
        return None

    async def _turn(self, message: Inbound, reply: Reply, started: float) -> TurnResult:
        if not message.text.strip() and not message.files:  # files alone are a question about them
            if message.addressed is not Addressed.CONTEXT:
                await _quietly(reply.fail(EMPTY_NOTICE), "fail")
            return TurnResult(TurnStatus.EMPTY)
        found = await self.store.settings_for(message.key)  # once per turn: on PostgreSQL each read is a round trip
        model, instructions = self._instructions(found)
        counter = self.counter(model)
        workspace_id = await self.store.workspace_id(message.key.platform, message.key.workspace)
        bar = barred(message.key, message.author_id, message.author_roles, found)
        if bar is not None and bar.rule == "users" and message.addressed is not Addressed.YES:
            message = replace(message, addressed=Addressed.CONTEXT)  # others in a thread stay its history, unanswered
        elif bar is not None:
            if message.addressed is Addressed.YES:  # a follow-up that may not be meant for the bot gets no note
                await self._barred_note(workspace_id, message, reply, bar.rule, bar.note)
            return TurnResult(TurnStatus.REFUSED)
        caps = caps_for(message.key, found, self.config)
        budgets = Budgets.from_settings(found)
        if message.addressed is not Addressed.CONTEXT:
            try:  # before moderation or the model cost anything: a flood over the rate stops here
                await self.limits.precheck(workspace_id, message.author_id, caps, budgets)
            except Refused as refusal:
                if not (refusal.allowance and self._fallback(found, model)):
                    await self.alerts.check(message.key, workspace_id, found, caps, budgets, refusal.limit)
                    return await self._refused(message, reply, refusal)
                try:
                    await self.limits.precheck(workspace_id, message.author_id, caps.doubled(), budgets.doubled())
                except Refused as beyond:
                    await self.alerts.check(message.key, workspace_id, found, caps, budgets, refusal.limit)
                    return await self._refused(message, reply, _past_fallback(beyond, self._fallback(found, model) or ""))

        read: ReadFiles | None = None
        reply_started = False
        if message.files:
            # A redelivery (or one mention sent as two events) must not fetch again, nor start a reply it won't finish;
            # turns in a conversation take turns, so the first delivery is stored by now.
            if await self.store.has_message(await self.store.conversation_id(message.key), message.message_id):
                return TurnResult(TurnStatus.DUPLICATE)
            if message.addressed is Addressed.YES:  # fetching takes a while: show the bot is on it
                await _quietly(reply.start(), "start")
                reply_started = True
            read = await read_files(message.files, self.file_limits, self._no_images(model))
        if self.redact is not None:
            message = replace(message, text=self.redact(message.text))
            if read is not None:
                redact = self.redact
                read.parts = [replace(part, content=redact(part.content)) if part.kind is not Kind.IMAGE else part
                              for part in read.parts]
        fitted = await self._fit(message, counter, model, instructions)
        if fitted is None:
            if message.addressed is not Addressed.CONTEXT:
                await _quietly(reply.fail(NO_ROOM_NOTICE), "fail")
            return TurnResult(TurnStatus.NO_ROOM)
        text, truncated = fitted
        size = counter.size(labelled(text, message.author_name, message.author_id))
        attached: list[StoredFile] = []
        notes: list[str] = []
        if read is not None:
            room = self._history_budget(model, instructions, counter) - size.tokens
            attached, cut = await fit_files(read.parts, room, counter, model)
            notes = read.notes + cut
            read = None  # the parts live on in attached only
        moderated = self.moderator is not None and found.get("moderation", "on") == "on"
        if moderated:
            assert self.moderator is not None
            checked = "\n\n".join([text, *(file.content for file in attached if file.kind == Kind.TEXT)])
            verdict = await self.moderator.check(checked, [file.content for file in attached if file.kind == Kind.IMAGE])
            await self._record_moderation(message.key, "in", verdict, checked)
            if verdict.blocked:
                if message.addressed is not Addressed.CONTEXT:
                    notice = FLAGGED_INPUT_NOTICE if verdict.decision == Decision.FLAGGED else UNAVAILABLE_NOTICE
                    await _quietly(reply.fail(notice), "fail")
                return TurnResult(TurnStatus.FLAGGED if verdict.decision == Decision.FLAGGED else TurnStatus.MODERATION_UNAVAILABLE)
        conversation, stored_id, answer_row = await self.store.ask(  # a question to answer gets its answer's row at once
            message.key, text, size.tokens + sum(file.tokens for file in attached),
            model if message.addressed is Addressed.YES else None, exact=size.exact,
            author_id=message.author_id, author_name=message.author_name, platform_id=message.message_id, files=attached,
        )
        if stored_id is None:
            return TurnResult(TurnStatus.DUPLICATE)
        if message.addressed is Addressed.CONTEXT:
            return TurnResult(TurnStatus.STORED)
        shared = SharedFiles(stored_id, attached, notes, reply_started) if message.files else None
        return await self._respond(message, reply, started, found, caps, workspace_id, conversation, answer_row, truncated,
                                   shared)

    async def _respond(
        self, message: Inbound, reply: Reply, started: float, found: dict[str, str], caps: Caps, workspace_id: int,
        conversation: int, answer_row: int | None, truncated: bool, shared: SharedFiles | None = None,
    ) -> TurnResult:
        """From the stored question to the stored answer: the window, the caps, the model.

        answer_row: the answer's row, begun with the question; until _answer takes it, every way out removes it."""
        model, instructions = self._instructions(found)
        counter = self.counter(model)
        budgets = Budgets.from_settings(found)
        moderated = self.moderator is not None and found.get("moderation", "on") == "on"
        switched: list[str] = []
        try:
            window = await self._window(conversation, model, instructions, counter)
            if message.addressed is Addressed.IF_CONTINUING and not _continues_exchange(window, message.author_id):
                await self._drop_answer(answer_row)
                return TurnResult(TurnStatus.STORED)
            files = await self._window_files(window, shared)
            prompt = build_messages(instructions, window, files, images=self._no_images(model) is None)
            text_only: Callable[[str], list[Message]] | None = None
            if self.config.vision == "auto" and has_images(prompt):
                text_only = lambda because: build_messages(instructions, window, files, images=False,  # noqa: E731
                                                           unseen_because=because)

            async def shorter_prompt() -> list[Message]:
                """About half the history, for a server that counts the prompt as longer than its window."""
                await counter.load()
                return build_messages(instructions, _halved(window, counter), files, images=self._no_images(model) is None)

            def exact_prompt_tokens() -> int:
                """For servers that report no usage: the prompt counted for real (only bounded sizes recounted)."""
                turns = sum(turn.tokens if turn.exact else counter.count_message(counted_text(turn)) + turn.file_tokens
                            for turn in window)
                return turns + self._instructions_size(model, instructions, counter) + REPLY_PRIMING

            try:
                admission = await self._admit(
                    workspace_id, message.author_id, caps, model, instructions, window, exact_prompt_tokens, budgets
                )
            except Refused as refusal:
                fallback = self._fallback(found, model)
                if not (refusal.allowance and fallback):
                    raise
                try:
                    admission = await self._admit(  # the cheaper model, up to twice the allowances
                        workspace_id, message.author_id, caps.doubled(), fallback, instructions, window,
                        exact_prompt_tokens, budgets.doubled(),
                    )
                except Refused as beyond:
                    raise _past_fallback(beyond, fallback) from None
                switched = await self._switch_note(workspace_id, message.author_id, model, fallback, refusal)
                model, counter = fallback, self.counter(fallback)
        except Refused as refusal:
            await self._drop_answer(answer_row)
            await self.alerts.check(message.key, workspace_id, found, caps, budgets, refusal.limit)
            return await self._refused(message, reply, refusal)
        except BaseException:
            await self._drop_answer(answer_row)
            raise
        if moderated:
            assert self.moderator is not None
            key = message.key
            reply = ModeratedReply(reply, self.moderator, lambda verdict, shown: self._record_moderation(key, "out", verdict, shown))
        usage: Usage | None = None
        written = False
        try:
            usage, result, written = await self._answer(
                conversation, admission, model, prompt, exact_prompt_tokens, truncated, reply, message.key.platform, started,
                answer_row, shorter_prompt, shared=shared, text_only=text_only, extra_notes=switched,
                chosen_by=("/chatbot fallback" if model != self._instructions(found)[0] else
                           "/chatbot model channel" if found.get("channel_model") else "/chatbot model"),
            )
            return result
        finally:
            await self.limits.settle(admission, model, usage, written)
            if usage is not None:
                self.metrics.tokens.labels(message.key.platform, "prompt").inc(usage.prompt_tokens)
                self.metrics.tokens.labels(message.key.platform, "completion").inc(usage.completion_tokens)
                await self.alerts.check(message.key, workspace_id, found, caps, budgets)

    def _fallback(self, found: dict[str, str], model: str) -> str | None:
        """The cheaper model to answer with once an allowance is used (None: none set, or it is this one)."""
        fallback = found.get("fallback_model")
        return fallback if fallback and fallback != model else None

    async def _switch_note(self, workspace_id: int, user_id: str, model: str, fallback: str, why: Refused) -> list[str]:
        """The note that the answer comes from the fallback model, and why: once a day per person."""
        day = self.store.clock().date().isoformat()
        if not await self.store.claim_notice(workspace_id, f"fallback:{user_id}:{day}"):
            return []
        return [f"Answered with `{fallback}` instead of `{model}`: {why} Until then, up to twice the allowance "
                "is answered with the cheaper model."]

    async def _barred_note(self, workspace_id: int, message: Inbound, reply: Reply, rule: str, note: str) -> None:
        """One short note a day per person and rule (and channel): never a model call. In a channel switched off
        it is private (where the platform can: Slack's ephemeral messages), or nothing."""
        day = self.store.clock().date().isoformat()
        where = message.key.channel if rule == "channel" else ""
        if rule == "channel":
            private = getattr(reply, "private_note", None)
            if private is not None and await self.store.claim_notice(workspace_id, f"{rule}:{where}:{message.author_id}:{day}"):
                await _quietly(private(note), "private note")
            return
        if await self.store.claim_notice(workspace_id, f"{rule}:{message.author_id}:{day}"):
            await _quietly(reply.fail(note), "fail")

    async def _drop_answer(self, answer_row: int | None) -> None:
        """Remove an answer's row that will not be streamed (the turn ends first); a database that fails here
        leaves it 'streaming', and recovery marks it interrupted."""
        if answer_row is not None:
            with contextlib.suppress(*self.store.errors):
                await self.store.complete_answer(answer_row, "", 0, status="interrupted")  # no text: the row goes

    async def _refused(self, message: Inbound, reply: Reply, refusal: Refused) -> TurnResult:
        self.metrics.refusals.labels(message.key.platform).inc()
        await _quietly(reply.fail(str(refusal)), "fail")
        return TurnResult(TurnStatus.REFUSED)

    async def _admit(
        self, workspace_id: int, user_id: str, caps: Caps, model: str, instructions: str, window: list[StoredMessage],
        exact_prompt_tokens: Callable[[], int], budgets: Budgets = Budgets(),
    ) -> Admission:
        """Reserve the prompt and the answer's output limit under the caps; the limit is what the model is sent.

        Under a daily cap the prompt is reserved at an upper bound of what the server will count: exact for OpenAI
        models (counted for real when a bound would shrink or refuse the request), UTF-8 bytes for models whose
        tokenizer is only guessed. With no cap the limit is CHATBOTS_MAX_OUTPUT_TOKENS, or none."""
        counter = self.counter(model)
        if not caps.daily and not budgets.any:
            return await self.limits.admit(workspace_id, user_id, caps, 0, self.config.max_output_tokens)
        wanted = self.config.max_output_tokens or self.output_reserve(self.context_tokens(counter))
        if not knows_tokenizer(model):
            turns = sum(byte_bound(counted_text(turn)) + MESSAGE_OVERHEAD + turn.file_tokens for turn in window)
            prompt = turns + byte_bound(instructions) + MESSAGE_OVERHEAD + REPLY_PRIMING
        else:
            prompt = sum(turn.tokens for turn in window) + self._instructions_size(model, instructions, counter) + REPLY_PRIMING
            room = await self.limits.room(workspace_id, user_id, caps)
            if room is not None and prompt + wanted > room and not (counter.exact and all(turn.exact for turn in window)):
                await counter.load()  # the bound decides something: count for real
                prompt = exact_prompt_tokens()
        return await self.limits.admit(workspace_id, user_id, caps, prompt, wanted, budgets, model)

    async def _answer(
        self, conversation: int, admission: Admission, model: str, prompt: list[Message], prompt_tokens: Callable[[], int],
        truncated: bool, reply: Reply, platform: str, started: float, answer_row: int | None,
        shorter_prompt: Callable[[], Awaitable[list[Message]]] | None = None, *,
        shared: SharedFiles | None = None, text_only: Callable[[str], list[Message]] | None = None,
        extra_notes: list[str] | None = None, chosen_by: str = "/chatbot model",
    ) -> tuple[Usage | None, TurnResult, bool]:
        """Stream the model's answer into the reply and store it; returns the usage to count against caps, and
        whether the store already counted it (with the answer, in one statement).

        The answer's row exists from the start (status 'streaming') and its shown text is saved every few
        seconds, so a process killed midway leaves an 'interrupted' answer behind instead of a hole.
        A server that finds the prompt too long for its window (our count of an unknown model's tokens can be
        off) is asked once more with shorter_prompt() before the person is told. notes (about files not read)
        follow the answer; text_only(why) is the prompt without images, for a model that refuses or cannot read them
        (CHATBOTS_VISION=auto): the model is then remembered, so later turns leave images out at once.
        """
        counter = self.counter(model)
        notes = (list(shared.notes) if shared is not None else []) + (extra_notes or [])
        moderated = reply if isinstance(reply, ModeratedReply) else None
        if answer_row is None:
            answer_row = await self.store.begin_answer(conversation, model)
        # The model's request goes out while the platform shows the reply starting: its round trip is not added
        # to the time to first text. Text waits until the reply has started (already, when files were fetched first).
        already = shared is not None and shared.reply_started
        starting = asyncio.ensure_future(_nothing() if already else _quietly(reply.start(), "start"))
        parts: list[str] = []
        thoughts: list[str] = []  # never shown nor stored; counted only if the server reports no usage
        usage: Usage | None = None
        saved_at = time.monotonic()
        retried = False
        while True:
            try:
                async with contextlib.aclosing(self.model.stream(model, prompt, admission.output_limit)) as stream:
                    async for part in stream:
                        if isinstance(part, Usage):
                            usage = part
                            continue
                        if isinstance(part, Reasoning):
                            thoughts.append(part.text)
                            if time.monotonic() - saved_at > PARTIAL_SAVE_INTERVAL:  # alive while it only thinks
                                await self.store.save_partial(answer_row, moderated.approved if moderated else "".join(parts))
                                saved_at = time.monotonic()
                            continue
                        if not parts:
                            self.metrics.first_token.labels(platform).observe(time.monotonic() - started)
                            await starting
                        parts.append(part)
                        await _quietly(reply.append(part), "append")
                        if moderated is not None and moderated.halted:
                            break  # flagged midway: stop generating, show nothing more
                        if time.monotonic() - saved_at > PARTIAL_SAVE_INTERVAL:
                            await self.store.save_partial(answer_row, moderated.approved if moderated else "".join(parts))
                            saved_at = time.monotonic()
            except ModelError as error:
                if error.kind in IMAGE_FAILURES and not parts and text_only is not None:
                    if error.kind is FailureKind.IMAGES_REFUSED:
                        log.info("the model server refused image parts for this model; answering from the text alone")
                        self._blind.put(model, True)
                    else:
                        log.info("the model server could not read an image; answering from the text alone")
                    refused = error.kind is FailureKind.IMAGES_REFUSED
                    notes.append(NO_VISION_NOTE if refused else IMAGE_UNREADABLE_NOTE)
                    prompt, text_only = text_only(CANT_READ_IMAGES if refused else IMAGE_UNREADABLE), None
                    continue
                if error.kind is FailureKind.CONTEXT_TOO_LONG and not parts and shorter_prompt is not None and not retried:
                    log.info("model server found the prompt too long for its window; trying once with less history")
                    prompt, retried = await shorter_prompt(), True
                    continue
                await starting
                self._report_model_failure(error, model)
                notice = model_notice(error.kind, model, shown=bool(parts), command=chosen_by)
                status = TurnStatus.FLAGGED if error.kind is FailureKind.CONTENT_FILTERED else TurnStatus.FAILED
                return usage, await self._failed(answer_row, model, parts, reply, with_notes_below(notice, notes), status=status), False
            except Exception:  # noqa: BLE001 - a bug must not leave the person without an answer
                await starting
                log.exception("turn failed unexpectedly")
                self.metrics.errors.labels("internal").inc()
                return usage, await self._failed(answer_row, model, parts, reply, with_notes_below(INTERNAL_ERROR_NOTICE, notes)), False
            except BaseException:  # cancelled: shutting down
                starting.cancel()
                raise
            break
        await starting

        answer = "".join(parts)
        if usage is None:
            await counter.load()
            usage = Usage(prompt_tokens(), counter.count(answer) + counter.count("".join(thoughts)), estimated=True)
        if moderated is not None and moderated.halted:
            return usage, await self._failed(answer_row, model, parts, reply, "", status=TurnStatus.FLAGGED), False
        if not answer.strip():
            return usage, await self._failed(answer_row, model, parts, reply, with_notes_below(EMPTY_ANSWER_NOTICE, notes)), False
        if truncated:
            await _quietly(reply.append(TRUNCATION_NOTICE), "append")
        if notes:
            await _quietly(reply.append("\n\n" + "\n".join(f"_{note}_" for note in notes)), "append")
        platform_ids = await _quietly(reply.finish(), "finish") or []
        if moderated is not None and moderated.halted:  # the last increment was flagged at finish
            return usage, await self._store_shown(answer_row, model, moderated.approved, TurnStatus.FLAGGED), False
        size = counter.size(answer)
        counted = self.limits.usage_record(admission, model, usage)
        await self.store.complete_answer(
            answer_row, answer, size.tokens, status="ok", exact=size.exact,
            platform_id=platform_ids[0] if platform_ids else None, usage=(usage.prompt_tokens, usage.completion_tokens),
            reply_parts=(admission.workspace_id, platform_ids), counted=counted,
        )
        return usage, TurnResult(TurnStatus.ANSWERED, answer, usage), counted is not None

    async def _window_files(self, window: list[StoredMessage], shared: SharedFiles | None) -> dict[int, list[StoredFile]]:
        """The files of the window's turns: this turn's from memory, earlier ones read only if there are any."""
        files = {shared.message_id: shared.files} if shared is not None and shared.files else {}
        earlier = [turn.id for turn in window if turn.file_tokens and turn.id not in files]
        if earlier:
            files.update(await self.store.message_files(earlier))
        return files

    def _report_model_failure(self, error: ModelError, model: str) -> None:
        self.metrics.errors.labels(error.kind).inc()
        self.failures.report("model", error.kind, "model call failed: %s; model %s", error.failure.describe(), model,
                             logger=log)

    async def _record_moderation(self, key: ConversationKey, direction: str, verdict: Verdict, text: str) -> None:
        self.metrics.moderation.labels(direction, verdict.decision).inc()
        if verdict.unmoderated_images:
            self.metrics.unmoderated_images.inc(verdict.unmoderated_images)
        keep = self.config.store_flagged_text and verdict.decision == Decision.FLAGGED
        await self.store.record_moderation(key, direction, verdict.decision, list(verdict.categories), text if keep else None)

    async def _window(self, conversation: int, model: str, instructions: str, counter: TokenCounter) -> list[StoredMessage]:
        """The turns the model will read; counted for real only once upper-bound sizes would cut history short."""
        budget = self._history_budget(model, instructions, counter)  # anew: cutting this message may have loaded the tokenizer
        window = await self.store.window(conversation, budget)
        if not window.rough:
            return window.messages
        await counter.load()
        budget = self._history_budget(model, instructions, counter)  # the instructions' size is exact now too
        corrected = await self.store.make_exact(conversation, budget, lambda turn: counter.count_message(counted_text(turn)))
        log.debug("counted %d turns exactly", corrected)
        return (await self.store.window(conversation, budget)).messages

    async def _fit(self, message: Inbound, counter: TokenCounter, model: str, instructions: str) -> tuple[str, bool] | None:
        """The message as the model will read it: whole, or cut to the window with a visible mark.

        Whole whenever it really fits: bounds decide only when they say it fits, and otherwise the tokenizer loads
        and both the message and the instructions (whose bound shrank the budget) are counted for real. None when
        the instructions leave no room for any message at all."""
        text = message.text
        as_read = labelled(text, message.author_name, message.author_id)  # its size is counted with the speaker's name
        budget = self._history_budget(model, instructions, counter)
        if byte_bound(as_read) + MESSAGE_OVERHEAD <= budget:
            return text, False  # fits whatever the tokenizer would say
        await counter.load()
        budget = self._history_budget(model, instructions, counter)  # the instructions' size is exact now too
        if not surely_over(as_read, budget - MESSAGE_OVERHEAD) and counter.count_message(as_read) <= budget:
            return text, False
        label = len(as_read) - len(text)
        room = budget - MESSAGE_OVERHEAD - counter.count(as_read[:label]) - counter.count(TRUNCATION_MARK) - CUT_MARGIN
        if room < 1:
            return None
        return counter.truncate(text, room) + TRUNCATION_MARK, True

    async def _failed(
        self, answer_row: int, model: str, parts: list[str], reply: Reply, notice: str, status: TurnStatus = TurnStatus.FAILED
    ) -> TurnResult:
        """End the reply with the notice; keep what was already shown so the history matches the thread."""
        await _quietly(reply.fail(notice), "fail")
        shown = reply.approved if isinstance(reply, ModeratedReply) else "".join(parts)
        return await self._store_shown(answer_row, model, shown, status)

    async def _store_shown(self, answer_row: int, model: str, shown: str, status: TurnStatus) -> TurnResult:
        stored_status = "flagged" if status is TurnStatus.FLAGGED else "interrupted"
        size = self.counter(model).size(shown)
        await self.store.complete_answer(answer_row, shown, size.tokens, status=stored_status, exact=size.exact)
        return TurnResult(status, shown)


def with_notes_below(notice: str, notes: list[str]) -> str:
    """A failure notice followed by the notes about files not (wholly) read, one a line: the person learns about
    those files whether or not an answer came. Plain text, as every notice: the platform formats each line."""
    return "\n\n".join([notice, "\n".join(notes)]) if notes else notice


def _halved(window: list[StoredMessage], counter: TokenCounter) -> list[StoredMessage]:
    """The newest turns holding at most half the window's tokens; a lone turn is cut to half its length instead.

    Sizes are counted for real (the tokenizer is loaded): an upper bound could leave a lone turn uncut."""
    sizes = [turn.tokens if turn.exact else counter.count_message(counted_text(turn)) for turn in window]
    budget = sum(sizes) // 2
    kept: list[StoredMessage] = []
    for turn, size in zip(reversed(window), reversed(sizes)):
        if kept and budget < size:
            break
        kept.append(turn)
        budget -= size
    kept.reverse()
    if len(kept) < len(window) or not kept:
        return kept
    last = kept[-1]
    text = counter.truncate(last.text, max(1, counter.count(last.text) // 2)) + TRUNCATION_MARK
    return [*kept[:-1], replace(last, text=text, tokens=counter.count_message(text))]


def _past_fallback(refusal: Refused, fallback: str) -> Refused:
    """A refusal past the fallback model's share: its limit is twice the allowance, so say why."""
    return Refused(f"{refusal} (That counts the fallback model `{fallback}`, which answers up to twice the allowance.)",
                   refusal.allowance, refusal.limit)


def _continues_exchange(window: list[StoredMessage], author_id: str) -> bool:
    """Whether an unmentioned follow-up is meant for the bot: it answered last, or only this person talks to it."""
    earlier = window[:-1]
    if not earlier:
        return False
    if earlier[-1].role == "assistant":
        return True
    return {turn.author_id for turn in earlier if turn.role == "user"} <= {author_id}


async def _nothing() -> None:
    """A step with nothing to do."""


async def _quietly(step: Awaitable[T], name: str) -> T | None:
    """Run a reply step; a platform failure is logged and must not lose the stored turn."""
    try:
        return await step
    except Exception as error:  # noqa: BLE001
        log.warning("reply %s failed: %s", name, type(error).__name__)
        return None
