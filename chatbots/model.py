"""The OpenAI-compatible chat client: streaming, retries, stall detection, and errors a person can read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import httpx2
import openai

from .config import Settings
from .types import Usage

log = logging.getLogger(__name__)

Message = dict[str, str]
"""One chat message in the OpenAI wire format: {"role": ..., "content": ...}."""

_REASONING_FAMILIES = ("o1", "o3", "o4", "gpt-5")
"""OpenAI models that reject max_tokens and want max_completion_tokens instead."""


class ModelError(Exception):
    """A failed model call, with what kind of failure it was and a notice fit to show in chat."""

    def __init__(self, kind: str, notice: str) -> None:
        super().__init__(f"{kind}: {notice}")
        self.kind = kind
        self.notice = notice


class ChatModel(Protocol):
    def stream(self, model: str, messages: list[Message]) -> AsyncIterator[str | Usage]:
        """Yield the answer's text as it arrives, then a Usage if the server reported one."""
        ...


def _classify(error: Exception, model: str) -> ModelError:
    if isinstance(error, ModelError):
        return error
    if isinstance(error, openai.RateLimitError):
        return ModelError("rate_limited", "The model is getting too many requests right now. Please try again in a minute.")
    if isinstance(error, (openai.APITimeoutError, TimeoutError)):
        return ModelError("timeout", "The model took too long to answer. Please try again.")
    if isinstance(error, openai.APIConnectionError):
        return ModelError("unavailable", "I can't reach the model server right now. Please try again in a little while.")
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return ModelError("auth", "The model server refused the bot's credentials. An admin needs to check OPENAI_API_KEY.")
    if isinstance(error, openai.NotFoundError):
        return ModelError("model_not_found", f"The model `{model}` isn't available on the model server. An admin can pick another one.")
    if isinstance(error, openai.BadRequestError):
        return ModelError("rejected", "The model server rejected this request. Try rephrasing, or start a new thread.")
    if isinstance(error, openai.APIError):
        return ModelError("unavailable", "The model server had a problem answering. Please try again.")
    return ModelError("internal", "Something went wrong on my side while answering. Please try again.")


class OpenAIChat:
    """Streams chat completions from any OpenAI-compatible server."""

    def __init__(self, client: openai.AsyncOpenAI, *, stall_timeout: float, max_output_tokens: int | None = None) -> None:
        self.client = client
        self.stall_timeout = stall_timeout
        self.max_output_tokens = max_output_tokens

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIChat:
        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",  # local servers often need no key
            base_url=settings.openai_base_url,
            max_retries=settings.model_retries,  # the SDK backs off on 408/409/429/5xx and honours Retry-After
            timeout=httpx2.Timeout(settings.stall_timeout + 5, connect=10.0),
        )
        return cls(client, stall_timeout=settings.stall_timeout, max_output_tokens=settings.max_output_tokens)

    def _output_cap(self, model: str) -> dict[str, int]:
        if self.max_output_tokens is None:
            return {}
        name = model.rsplit("/", 1)[-1]
        field = "max_completion_tokens" if name.startswith(_REASONING_FAMILIES) else "max_tokens"
        return {field: self.max_output_tokens}

    async def stream(self, model: str, messages: list[Message]) -> AsyncIterator[str | Usage]:
        try:
            async with asyncio.timeout(self.stall_timeout):
                response = await self.client.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                    **self._output_cap(model),  # type: ignore[arg-type]
                )
            chunks = aiter(response)
            try:
                while True:
                    # A per-chunk deadline: a stream that goes quiet ends with an error instead of hanging the thread.
                    async with asyncio.timeout(self.stall_timeout):
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                    if chunk.choices:
                        text = chunk.choices[0].delta.content
                        if text:
                            yield text
                    if chunk.usage is not None:
                        yield Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
            finally:
                await response.close()
        except Exception as error:  # noqa: BLE001 - every failure becomes a ModelError with a readable notice
            failure = _classify(error, model)
            log.warning("model call failed: %s (%s)", failure.kind, type(error).__name__)
            raise failure from error

    async def list_models(self) -> list[str] | None:
        """The server's model ids, or None when it does not offer a list."""
        try:
            return [entry.id async for entry in self.client.models.list()]
        except openai.APIError:
            return None
