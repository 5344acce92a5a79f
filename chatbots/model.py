"""The OpenAI-compatible chat client: streaming, retries, stall detection, and errors a person can read.

Chat completions stream over the server's one OpenAIClient session (openai_client.py), parsing the server-sent
events directly. The official SDK turns every chunk into a pydantic model and routes each request through several
layers: for a 50-chunk answer that measured 15.9 ms of CPU against 1.9 ms here, and this path runs for every reply.
tests/test_openai_parity.py replays the same streams through the SDK and through this, and compares what comes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, ClassVar, Protocol

import aiohttp

from .config import Config
from .failures import Failure, FailureKind, classify, content_filtered_finish, model_notice
from .lru import LRU
from .openai_client import OpenAIClient
from .reasoning import REASONING_FIELDS, Reasoning, ThinkFilter
from .types import Usage

log = logging.getLogger(__name__)

Message = dict[str, Any]
"""One chat message in the OpenAI wire format: {"role": ..., "content": text or a list of content parts}."""

LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
"""The names servers know an output limit by. OpenAI wants max_completion_tokens (its reasoning models reject
max_tokens, and it refuses both at once); many local servers know only max_tokens, and some (Ollama) silently ignore
a name they do not know, which would leave an answer unbounded. So OpenAI gets the first name alone, other servers
both; a 400 or 422 that names one drops it for that model on that server, and the request is sent again."""
_UNKNOWN_FIELD_HINTS = ("unsupported", "unrecognized", "unknown", "extra", "not permitted", "not supported",
                        "not allowed", "same time", "combination", "invalid_parameter")
"""Words of an error that refuses a parameter itself (not, say, a limit too large for the window)."""
_IMAGE_REFUSAL_HINTS = ("image", "vision", "multimodal", "multi-modal", "content type", "content part",
                        "must be a string", "expected string")
"""Words of a 400 that refuses image parts ("image_url is only supported by certain models", "not a multimodal
model", "Invalid content type"), when the request carried some."""
_BAD_IMAGE_HINTS = ("unsupported image", "invalid image", "invalid_image", "image_parse_error", "sanitizer",
                    "image_too_large", "image too large", "image is too large")
"""Words of a vision model's 400 about one image itself (OpenAI: "You uploaded an unsupported image", codes
invalid_image_format, image_parse_error, sanitizer_server_error): the model reads images, so it is not remembered
as one that cannot (one damaged file must not turn images off for everyone)."""
MAX_REMEMBERED_MODELS = 256
COALESCE = 0.05
"""Seconds a flowing stream waits to gather more tokens per read (see OpenAIChat._batches)."""
BATCH_ABOVE = 8
"""With more model streams than this in flight, a flowing stream stops reading its socket while it waits (see _gather).

Measured with 500 one-token chunks 5 ms apart: read unpaused, 8 streams cost ~14 % of a core (~47 ms a stream), 16
cost ~26 %; paused, 2.5x less, but each stream's end shows 20-40 ms later. Below this the loop has time to spare.
"""
READS_PER_SECOND = 1000
"""Paused waits stretch past COALESCE to keep the process near this many stream reads a second (each ~0.2 ms of CPU)."""
MAX_PAUSE = 0.25
"""The longest paused wait: a stream's end shows at most this late, well inside the ~1 s between visible updates."""
MAX_RETRY_AFTER = 60.0
"""A server asking for a longer pause than this gets a 'busy' notice instead of a silent minute-long wait."""


class ModelError(Exception):
    """A failed model call: what kind of failure it was (failures.py), and a notice fit to show in chat."""

    def __init__(self, failure: Failure, model: str = "") -> None:
        super().__init__(failure.describe())
        self.failure = failure
        self.kind = failure.kind
        self.notice = model_notice(failure.kind, model)

class ChatModel(Protocol):
    def stream(
        self, model: str, messages: list[Message], max_output: int | None = None
    ) -> AsyncGenerator[str | Reasoning | Usage, None]:
        """Yield the answer's visible text as it arrives, its hidden reasoning apart, then a Usage if the server
        reported one.

        max_output bounds the answer's tokens (the server is told); None leaves it to the server."""
        ...


TIMEOUT = Failure(FailureKind.TIMEOUT)
UNREACHABLE = Failure(FailureKind.UNREACHABLE)
BROKEN_STREAM = Failure(FailureKind.SERVER_ERROR)
ERROR_BODY_LIMIT = 65_536
"""Bytes of an error response read to classify it."""
IMAGES_REFUSED = Failure(FailureKind.IMAGES_REFUSED)
"""Raised before any text, so the engine can answer again from the text alone (CHATBOTS_VISION=auto)."""


def retry_delay(attempt: int, headers: Any) -> float | None:
    """Seconds to wait before retry number attempt (0-based): the server's Retry-After, else backoff with jitter.

    None when the server asks for a longer pause than is worth keeping a person waiting.
    """
    asked: float | None = None
    if headers is not None:
        if (ms := headers.get("retry-after-ms")) is not None:
            try:
                asked = float(ms) / 1000
            except ValueError:
                pass
        elif (value := headers.get("retry-after")) is not None:
            try:
                asked = float(value)
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                asked = parsed.timestamp() - time.time() if parsed else None
    if asked is not None and asked >= 0:
        return asked if asked <= MAX_RETRY_AFTER else None
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _rejected_field(error_body: bytes, sent: tuple[str, ...]) -> str | None:
    """Which output-limit name a 400/422 refuses, if it refuses one: the error's param, else the first name it mentions."""
    text = error_body.decode("utf-8", "replace")
    if not any(hint in text.lower() for hint in _UNKNOWN_FIELD_HINTS):
        return None
    try:
        error = json.loads(text).get("error")
        param = error.get("param") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        param = None
    if param in sent:
        return param
    found = [(text.find(name), name) for name in sent if name in text]
    return min(found)[1] if found else None


def has_images(messages: list[Message]) -> bool:
    """Whether any message carries an image part."""
    return any(
        isinstance(message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") == "image_url" for part in message["content"])
        for message in messages
    )


def _refuses_images(error_body: bytes) -> bool:
    text = error_body.decode("utf-8", "replace").lower()
    return any(hint in text for hint in _IMAGE_REFUSAL_HINTS)


def _blames_an_image(error_body: bytes) -> bool:
    text = error_body.decode("utf-8", "replace").lower()
    return any(hint in text for hint in _BAD_IMAGE_HINTS)


def _usage(reported: dict[str, Any]) -> Usage:
    """The server's usage, with its reasoning tokens in completion_tokens.

    OpenAI counts completion_tokens_details.reasoning_tokens inside completion_tokens; a server that counts them
    apart shows it by reporting more reasoning than completion, or a total above prompt plus completion."""
    prompt = int(reported.get("prompt_tokens") or 0)
    completion = int(reported.get("completion_tokens") or 0)
    details = reported.get("completion_tokens_details")
    reasoning = int(details.get("reasoning_tokens") or 0) if isinstance(details, dict) else 0
    if reasoning > completion:
        completion += reasoning
    total = int(reported.get("total_tokens") or 0)
    return Usage(prompt, max(completion, total - prompt))


def _parse(payloads: list[bytes]) -> list[dict[str, Any]]:
    """The JSON objects among a read's event payloads, parsed as one array: a third of the CPU of one parse each.

    A payload that is not one JSON value on its own breaks the array or its count, and raises like a lone parse would.
    """
    if not payloads:
        return []
    values = json.loads(b"[" + b",".join(payloads) + b"]")
    if len(values) != len(payloads):
        raise ValueError("an event payload is not one JSON value")
    return [value for value in values if isinstance(value, dict)]


class OpenAIChat:
    """Streams chat completions from any OpenAI-compatible server."""

    in_flight: ClassVar[int] = 0
    """Model streams open in this process, over every instance: what decides whether reads are batched."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        stall_timeout: float,
        retries: int = 3,
        max_output_tokens: int | None = None,
        reasoning_effort: str | None = None,
        batch_above: int = BATCH_ABOVE,
        headers: Mapping[str, str] | None = None,
        client: OpenAIClient | None = None,
    ) -> None:
        self.client = client or OpenAIClient(base_url, api_key, headers)
        """The chat server's connection; moderation on the same server shares it."""
        self.url = self.client.url("chat/completions")
        self.stall_timeout = stall_timeout
        self.retries = retries
        self.max_output_tokens = max_output_tokens
        self.reasoning_effort = reasoning_effort
        """Sent as reasoning_effort when set (CHATBOTS_REASONING_EFFORT)."""
        self.batch_above = batch_above
        host = urllib.parse.urlsplit(base_url).hostname
        self._default_fields = LIMIT_FIELDS[:1] if host == "api.openai.com" else LIMIT_FIELDS
        self._fields: LRU[str, tuple[str, ...]] = LRU(MAX_REMEMBERED_MODELS)
        """Per model, the output-limit names this server took (see LIMIT_FIELDS)."""
        self._warned_ignored: set[str] = set()
        self._no_effort: LRU[str, bool] = LRU(MAX_REMEMBERED_MODELS)
        """Models this server refused reasoning_effort for (models that do not reason): it is left out for them."""

    @classmethod
    def from_settings(cls, settings: Config) -> OpenAIChat:
        client = OpenAIClient.for_chat(settings)
        return cls(
            client.base_url,
            client.api_key,
            stall_timeout=settings.stall_timeout,
            retries=settings.model_retries,
            max_output_tokens=settings.max_output_tokens,
            reasoning_effort=settings.reasoning_effort,
            client=client,
        )

    async def close(self) -> None:
        await self.client.close()

    def limit_fields(self, model: str) -> tuple[str, ...]:
        """The names an output limit is sent under to this server for this model."""
        return self._fields.get(model) or self._default_fields

    def request_body(
        self, model: str, messages: list[Message], max_output: int | None = None, fields: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        limit = max_output if max_output is not None else self.max_output_tokens
        if limit is not None:
            for name in fields or self.limit_fields(model):
                body[name] = limit
        if self.reasoning_effort is not None and not self._no_effort.get(model):
            body["reasoning_effort"] = self.reasoning_effort
        return body

    async def _open(self, model: str, messages: list[Message], limit: int | None) -> aiohttp.ClientResponse:
        """POST the request, retrying 408/409/429/5xx and connection failures with backoff.

        A 400/422 refusing the output limit's name is sent again under the other name (twice at most); one refusing
        reasoning_effort is sent again without it, and the model is remembered."""
        attempt = renamed = 0
        fields = self.limit_fields(model)
        while True:
            body = json.dumps(self.request_body(model, messages, limit, fields)).encode()
            try:
                async with asyncio.timeout(self.stall_timeout):
                    response = await self.client.session().post(self.url, data=body, headers={"Content-Type": "application/json"})
            except TimeoutError:
                failure, headers = TIMEOUT, None
            except aiohttp.ClientError:
                failure, headers = UNREACHABLE, None
            else:
                if response.status == 200:
                    if limit is not None and fields != self.limit_fields(model):
                        self._fields.put(model, fields)
                    return response
                headers = response.headers
                error_body = b""
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with asyncio.timeout(self.stall_timeout):
                        error_body = await response.content.read(ERROR_BODY_LIMIT)
                response.release()
                failure = classify(response.status, error_body, model=model)
                if (response.status in (400, 422) and self.reasoning_effort is not None and not self._no_effort.get(model)
                        and _rejected_field(error_body, ("reasoning_effort",)) is not None):
                    self._no_effort.put(model, True)
                    log.info("model server refused reasoning_effort for this model; sending it without")
                    continue
                rejected = None
                if response.status in (400, 422) and limit is not None and renamed < 2:
                    rejected = _rejected_field(error_body, fields)
                if (rejected is None and failure.kind is FailureKind.REJECTED and has_images(messages)
                        and _refuses_images(error_body)):
                    kind = FailureKind.IMAGE_UNREADABLE if _blames_an_image(error_body) else FailureKind.IMAGES_REFUSED
                    failure = Failure(kind, failure.status, failure.type, failure.code)
                    raise ModelError(failure, model)
                if rejected is not None:
                    other = next(name for name in LIMIT_FIELDS if name != rejected)
                    fields = tuple(name for name in fields if name != rejected) or (other,)
                    renamed += 1
                    log.info("model server refused the output limit as %s; sending it as %s", rejected, "+".join(fields))
                    continue
                if not failure.retryable:
                    raise ModelError(failure, model)
            delay = retry_delay(attempt, headers)
            if attempt >= self.retries or delay is None:
                raise ModelError(failure, model)
            log.info("model call failed (%s), retry %d in %.2fs", failure.describe(), attempt + 1, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def stream(
        self, model: str, messages: list[Message], max_output: int | None = None
    ) -> AsyncGenerator[str | Reasoning | Usage, None]:
        limit = max_output if max_output is not None else self.max_output_tokens
        thoughts = ThinkFilter()
        filtered = False  # a content filter ended the answer (finish_reason): what came before it still shows
        try:
            response = await self._open(model, messages, limit)
            OpenAIChat.in_flight += 1
            try:
                async for events in self._batches(response):
                    texts: list[str] = []
                    hidden: list[str] = []
                    for event in events:
                        if "error" in event:
                            if texts:
                                yield "".join(texts)  # what came before the error still shows
                            raise ModelError(classify(None, event, model=model), model)
                        choices = event.get("choices")
                        if choices:
                            if content_filtered_finish(choices[0].get("finish_reason")):
                                filtered = True
                            delta = choices[0].get("delta") or {}
                            text = delta.get("content")
                            if text:
                                shown, thought = thoughts.feed(text)
                                if shown:
                                    texts.append(shown)
                                if thought:
                                    hidden.append(thought)
                            for name in REASONING_FIELDS:
                                if isinstance(field := delta.get(name), str) and field:  # other shapes are not text
                                    hidden.append(field)
                        usage = event.get("usage")
                        if usage:
                            if texts:
                                yield "".join(texts)
                                texts.clear()
                            reported = _usage(usage)
                            if limit is not None and reported.completion_tokens > limit:
                                self._ignored(model)
                            yield reported
                    if hidden:
                        yield Reasoning("".join(hidden))
                    if texts:
                        yield "".join(texts)
                if filtered:
                    raise ModelError(Failure(FailureKind.CONTENT_FILTERED), model)
                shown, thought = thoughts.end()
                if thought:
                    yield Reasoning(thought)
                if shown:
                    yield shown
            finally:
                OpenAIChat.in_flight -= 1
                response.close()
        except (aiohttp.ClientError, ValueError, TypeError, AttributeError) as error:
            log.info("model stream broke: %s", type(error).__name__)
            raise ModelError(BROKEN_STREAM, model) from None

    def _ignored(self, model: str) -> None:
        """The server wrote past the output limit it was sent: caps may be overrun with it. Said once per model."""
        if model not in self._warned_ignored and len(self._warned_ignored) < MAX_REMEMBERED_MODELS:
            self._warned_ignored.add(model)
            log.warning("the model server ignored the output limit (sent as %s); daily caps can be overrun with it",
                        "+".join(self.limit_fields(model)))

    async def _batches(self, response: aiohttp.ClientResponse) -> AsyncIterator[list[dict[str, Any]]]:
        """The server-sent events' JSON payloads, a batch per read, with a deadline on each read.

        Once text flows, each read waits up to COALESCE for more to arrive (or for the stream's end): people see
        updates about once a second anyway, and a model streaming a token every few milliseconds would otherwise
        cost a wake-up, a parse and a pass through the engine per token. The deadline starts after that wait, so
        only a server that sends nothing for stall_timeout counts as stalled.
        """
        pending = b""
        reads = response.content.iter_any().__aiter__()
        flowing = False
        while True:
            if flowing:
                await self._gather(response)
            try:
                async with asyncio.timeout(self.stall_timeout):
                    data = await anext(reads)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ModelError(TIMEOUT) from None
            pending += data
            *lines, pending = pending.split(b"\n")
            payloads: list[bytes] = []
            done = False
            for line in lines:
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank separators
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                if payload:
                    payloads.append(payload)
            events = _parse(payloads)
            if events:
                flowing = True
                yield events
            if done:
                return

    async def _gather(self, response: aiohttp.ClientResponse) -> None:
        """Wait up to COALESCE for more of a flowing stream; with many streams in flight, with its socket unread.

        Waiting alone still costs a wake-up, a recv, an HTTP parse and a buffer append per TCP segment, a token
        each: with a hundred streams that was most of the bot's CPU. Not reading lets the kernel gather the
        segments for one read (over TLS the socket is still drained into the TLS buffer; the parse and append
        are what is saved). A paused socket cannot show the stream's end, which then shows up to a wait late, so
        below the threshold the wait ends at the stream's end as before. Under heavier load the paused wait
        stretches (READS_PER_SECOND), as each read has a cost of its own too.
        """
        transport = self._pausable(response)
        if transport is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COALESCE):
                    await response.content.wait_eof()
            return
        transport.pause_reading()
        try:
            await asyncio.sleep(min(MAX_PAUSE, max(COALESCE, OpenAIChat.in_flight / READS_PER_SECOND)))
        finally:
            if not transport.is_closing():  # a closed one has nothing to resume; a pooled one must be reading
                transport.resume_reading()

    def _pausable(self, response: aiohttp.ClientResponse) -> asyncio.Transport | None:
        """The response's transport if this wait should stop reading it: busy process, connection still ours, reading."""
        if OpenAIChat.in_flight <= self.batch_above or response.content.is_eof():
            return None
        connection = response.connection  # None once the body has ended and the connection went back to the pool
        transport = connection.transport if connection is not None else None
        if transport is None or transport.is_closing() or not transport.is_reading():
            return None  # gone, or paused by aiohttp's own flow control, which resumes it itself
        return transport

    async def list_models(self) -> list[str] | None:
        """The server's model ids, or None when it does not offer a list."""
        return await self.client.list_models()
