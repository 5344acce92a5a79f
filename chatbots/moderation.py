"""Moderation of what goes in and out, and a Reply that only ever shows text that passed.

The moderation server is configured apart from the chat server (CHATBOTS_MODERATION_BASE_URL / _API_KEY /
_MODEL) because many OpenAI-compatible chat servers have no /moderations endpoint. On the chat server's base URL
and key it shares the chat's OpenAIClient (and its extra headers); elsewhere it has an OpenAIClient of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from .config import Config
from .failure_log import FailureLog
from .failures import FLAGGED_INPUT_NOTICE, FLAGGED_OUTPUT_NOTICE, Failure, FailureKind, classify  # noqa: F401 - notices re-exported
from .flush import PeriodicFlush
from .openai_client import DEFAULT_BASE_URL, OpenAIClient, extra_headers
from .types import Decision, Reply

log = logging.getLogger(__name__)

UNAVAILABLE_NOTICE = (
    "I can't check messages right now (the moderation service is unavailable), so I'm not answering. "
    "Please try again later; an admin can check CHATBOTS_MODERATION_BASE_URL."
)
IMAGES_REJECTED = (400, 422)
"""How a text-only moderation model (text-moderation-latest) or a gateway that takes no image inputs refuses them."""
CONTEXT_CHARS = 300
"""Already-approved text sent along with each new increment, so a phrase split across checks is still seen whole."""


class NoVerdict(ValueError):
    """The moderation server answered without a usable verdict: the failure says why."""

    def __init__(self, failure: Failure, reason: str = "") -> None:
        super().__init__(reason or failure.describe())
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    categories: tuple[str, ...] = ()
    unmoderated_images: int = 0
    """Images sent along but not checked: the moderation model takes no images, so the verdict is on the text alone."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))  # a plain "flagged" reads as the same Decision

    @property
    def blocked(self) -> bool:
        return self.decision in (Decision.FLAGGED, Decision.ERROR_BLOCKED)


class Moderator:
    """Calls /moderations on one server; a failure is a verdict too (CHATBOTS_MODERATION_ON_ERROR)."""

    def __init__(self, base_url: str, api_key: str | None, model: str, *, block_on_error: bool, timeout: float = 10.0,
                 client: OpenAIClient | None = None) -> None:
        self.client = client or OpenAIClient(base_url, api_key)
        self._owns_client = client is None
        """A client shared with the chat is closed by the chat, not here."""
        self.url = self.client.url("moderations")
        self.api_key = self.client.api_key
        self.model = model
        self.block_on_error = block_on_error
        self.timeout = timeout
        self.failures = FailureLog()
        """Replaced by the engine's, which also counts failures in its metrics."""
        self.imageless: set[str] = set()
        """Moderation models found, in this process, to refuse image inputs: their checks send the text alone."""

    @classmethod
    def from_settings(cls, settings: Config, chat: OpenAIClient | None = None) -> Moderator | None:
        """The configured moderator, sharing `chat` (the chat server's client) when it is the same server and key."""
        if not settings.moderation:
            return None
        chat_base = settings.openai_base_url or DEFAULT_BASE_URL
        base = settings.moderation_base_url or chat_base
        key = settings.moderation_api_key or settings.openai_api_key
        client = None
        if isinstance(chat, OpenAIClient) and chat.serves(base, key):
            client = chat
        elif base.rstrip("/") == chat_base.rstrip("/"):
            client = OpenAIClient(base, key, extra_headers(settings))
        moderator = cls(base, key, settings.moderation_model, block_on_error=settings.moderation_on_error == "block",
                        client=client)
        moderator._owns_client = client is None or client is not chat
        return moderator

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def check(self, text: str, images: Sequence[str] = ()) -> Verdict:
        """One moderation call on text and any images (data: URLs), in one multimodal input as omni-moderation
        models take it. A failure is a verdict too, following CHATBOTS_MODERATION_ON_ERROR.

        A model that refuses the images (a 400/422 to a call carrying them) is asked again with the text alone; once
        that answers, the model is remembered, so later checks send only the text. Either way the verdict counts the
        images it did not check."""
        sent = images if self.model not in self.imageless else ()
        try:
            status, body = await self._post(text, sent)
            if sent and status in IMAGES_REJECTED:
                status, body = await self._post(text, ())
                if status == 200:
                    self._takes_no_images()
                sent = ()
            if status != 200:
                raise NoVerdict(moderation_failure(status, body))
            try:
                parsed = json.loads(body)
            except ValueError:
                raise NoVerdict(Failure(FailureKind.MALFORMED, 200), "the body is not JSON") from None
            verdict = parse_verdict(parsed)
            return Verdict(verdict.decision, verdict.categories, len(images) - len(sent))
        except (aiohttp.ClientError, TimeoutError, NoVerdict) as error:
            failure, reason = _failure(error)
            decision = Decision.ERROR_BLOCKED if self.block_on_error else Decision.ERROR_ALLOWED
            self.failures.report("moderation", failure.kind, "moderation call failed: %s; %s", reason,
                                 "blocking" if self.block_on_error else "allowing", logger=log)
            return Verdict(decision)

    async def _post(self, text: str, images: Sequence[str]) -> tuple[int, bytes]:
        given: str | list[dict[str, Any]] = text
        if images:
            given = [{"type": "text", "text": text}] if text.strip() else []
            given += [{"type": "image_url", "image_url": {"url": url}} for url in images]
        return await self.client.post_json("moderations", {"model": self.model, "input": given}, self.timeout)

    def _takes_no_images(self) -> None:
        if self.model not in self.imageless:
            self.imageless.add(self.model)
            log.warning("moderation model %s refuses image inputs: images are not moderated, only the text "
                        "(use an omni-moderation model to moderate images)", self.model)


def moderation_failure(status: int, body: bytes) -> Failure:
    """What a non-200 answer to /moderations means; a 404/405/501 is a server without the endpoint."""
    failure = classify(status, body)
    if status in (404, 405, 501):
        return Failure(FailureKind.NO_ENDPOINT, failure.status, failure.type, failure.code)
    return failure


def parse_verdict(body: object) -> Verdict:
    """The verdict on what was sent: every `results[i].flagged` a boolean, flagged when any is.

    Anything else is no verdict and raises NoVerdict, so CHATBOTS_MODERATION_ON_ERROR decides: an empty or
    malformed answer must never count as "passed". Categories are detail: only those marked true are kept.
    """
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not results:
        raise NoVerdict(Failure(FailureKind.MALFORMED, 200), "results missing, empty or not a list")
    if not all(isinstance(result, dict) and isinstance(result.get("flagged"), bool) for result in results):
        raise NoVerdict(Failure(FailureKind.MALFORMED, 200), "a result's flagged is missing or not a boolean")
    hits: set[str] = set()
    for result in results:  # one per input: flagged when any is
        categories = result.get("categories")
        if isinstance(categories, dict):
            hits.update(str(name) for name, hit in categories.items() if hit is True)
    flagged = any(result["flagged"] for result in results)
    return Verdict(Decision.FLAGGED if flagged else Decision.PASSED, tuple(sorted(hits)))


def _failure(error: Exception) -> tuple[Failure, str]:
    """A failed call's kind, and for the log what was wrong with the response (never any of its text)."""
    if isinstance(error, NoVerdict):
        reason = str(error)
        described = error.failure.describe()
        return error.failure, reason if reason == described else f"{described}: {reason}"
    failure = Failure(FailureKind.TIMEOUT if isinstance(error, TimeoutError) else FailureKind.UNREACHABLE)
    return failure, f"{failure.describe()} ({type(error).__name__})"


class ModeratedReply:
    """Wraps a platform Reply: text reaches it only after moderation has passed it.

    Increments are checked as they come, at most one check in flight and one per interval, so a long answer
    costs about one moderation call a second however fast it streams. If a check flags the answer, nothing
    more is shown and the reply ends with a notice; what was already shown stays.
    """

    def __init__(self, inner: Reply, moderator: Moderator, record: Callable[[Verdict, str], Awaitable[None]], interval: float = 1.0) -> None:
        self.inner = inner
        self.moderator = moderator
        self.record = record
        self.interval = interval
        self.approved = ""
        self.halted: Verdict | None = None
        self._pending: list[str] = []
        self._lock = asyncio.Lock()
        self._checker = PeriodicFlush(
            self._check_pending, lambda: self.interval, self._lock, until=lambda: self.halted is not None
        )
        self.checks = 0

    async def start(self) -> None:
        await self.inner.start()

    async def append(self, text: str) -> None:
        if self.halted:
            return
        self._pending.append(text)
        self._checker.poke()

    async def _check_pending(self, final: bool = False) -> bool:
        """Moderate everything not yet shown; pass it on, or halt. False when it waited for a whole word instead.

        The first check waits for a whole word: a lone fragment tells the moderation model little, and the
        platforms hold half-words back anyway, so checking it would only spend the first interval on nothing.
        """
        if self.halted or not self._pending:
            return True
        increment = "".join(self._pending)
        if not final and not self.approved and not any(c.isspace() for c in increment.lstrip()):
            return False
        self._pending.clear()
        if not increment.strip():
            self.approved += increment
            await self.inner.append(increment)
            return True
        self.checks += 1
        verdict = await self.moderator.check(self.approved[-CONTEXT_CHARS:] + increment)
        await self.record(verdict, increment)
        if verdict.blocked:
            self.halted = verdict
            return True
        self.approved += increment
        await self.inner.append(increment)
        return True

    async def _drain(self) -> None:
        await self._checker.stop()
        async with self._lock:
            await self._check_pending(final=True)

    async def finish(self) -> list[str]:
        await self._drain()
        if self.halted:
            return await self.inner.fail(self._halt_notice())
        return await self.inner.finish()

    async def fail(self, notice: str) -> list[str]:
        await self._drain()
        return await self.inner.fail(self._halt_notice() if self.halted else notice)

    def _halt_notice(self) -> str:
        assert self.halted is not None
        return FLAGGED_OUTPUT_NOTICE if self.halted.decision == Decision.FLAGGED else UNAVAILABLE_NOTICE
