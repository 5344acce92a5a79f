"""A fake OpenAI-compatible server on 127.0.0.1 that speaks real SSE, with scripted answers and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    """One queued response: an answer streamed in chunks, or a fault."""

    text: str | None = None
    chunks: int | None = None
    status: int | None = None
    retry_after: float | None = None
    stall_after: int | None = None
    error_after: int | None = None
    usage: bool = True
    hold: bool = False
    """Wait for release_held() before answering: lets a test keep one conversation busy."""
    pieces: list[str] | None = None
    """The content chunks exactly (text and chunks are then ignored): a test chooses where chunks split."""
    reasoning: list[str] | None = None
    """Reasoning deltas streamed before the content, in reasoning_field, one chunk each."""
    reasoning_field: str = "reasoning_content"
    reasoning_tokens: int | None = None
    """Reported as completion_tokens_details.reasoning_tokens, and (as OpenAI does) inside completion_tokens."""
    error: Any = None
    """The body sent with status (default: an OpenAI-style server_error), or the error event sent at error_after."""
    finish: str = "stop"
    """The last chunk's finish_reason ("content_filter": an Azure-style filter ended the answer)."""


@dataclass
class FakeModelServer:
    """Answers /v1/chat/completions, /v1/models and /v1/moderations like an OpenAI-compatible server.

    With nothing queued it echoes the last user message as "echo: ..." so tests can see what the model read.
    """

    models: list[str] = field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o"])
    flag_words: set[str] = field(default_factory=set)
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    default_chunks: int = 5
    moderation_status: int | None = None
    answer_tokens: int | None = None
    """A talkative model: with nothing queued it answers this many one-token words, or fewer if it honours a limit."""
    limit_fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens")
    """The output-limit names it honours."""
    unknown_limit_field: str = "ignore"
    """What it does with a limit name it does not know: 'ignore' it (like Ollama) or 'reject' it with a 400."""
    exclusive_limits: bool = False
    """Refuse both names at once with a 400, like OpenAI."""
    moderation_body: Any = None
    """When set, /moderations answers 200 with exactly this JSON (for malformed-response tests), or with
    moderation_status this JSON as the error body."""
    reject_images: bool = False
    effort_models: set[str] | None = None
    """When set, only these models take reasoning_effort; for others it is refused with OpenAI's 400."""
    """Refuse requests carrying image parts with a 400, as OpenAI does for a model without vision."""
    moderation_image_status: int | None = None
    """When set, /moderations refuses a request carrying image inputs with this status, as a text-only moderation
    model (OpenAI's text-moderation-latest: 400) or a gateway validating its input (422) does."""
    flag_image_bytes: set[bytes] = field(default_factory=set)
    """/moderations flags an image whose decoded bytes contain one of these."""
    unreadable_image_bytes: set[bytes] = field(default_factory=set)
    """Chat requests with an image whose decoded bytes contain one of these get OpenAI's 400 for a bad image."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    moderation_requests: list[dict[str, Any]] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: deque[Scripted] = deque()
        self._release = asyncio.Event()
        self._held = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._changed = asyncio.Condition()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def queue(self, text: str | None = None, **options: Any) -> None:
        self._script.append(Scripted(text=text, **options))

    async def start(self) -> FakeModelServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/moderations", self._moderations)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._release.set()  # let stalled and held streams end so shutdown does not hang
        self._held.set()
        if self._runner:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeModelServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def release_held(self) -> None:
        self._held.set()

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.requests) >= count), timeout)

    async def _record(self, body: dict[str, Any]) -> None:
        async with self._changed:
            self.requests.append(body)
            self.request_times.append(time.monotonic())
            self._changed.notify_all()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        await self._record(body)
        refused = self._refused_limit(body)
        if refused is not None:
            return web.json_response(refused, status=400)
        if self.effort_models is not None and "reasoning_effort" in body and body["model"] not in self.effort_models:
            error = {"message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                     "type": "invalid_request_error", "param": "reasoning_effort", "code": "unsupported_parameter"}
            return web.json_response({"error": error}, status=400)
        if any(self._image_bytes_contain(part, self.unreadable_image_bytes) for part in _parts(body)):
            error = {"message": "You uploaded an unsupported image. Please make sure your image is valid.",
                     "type": "invalid_request_error", "param": None, "code": "invalid_image_format"}
            return web.json_response({"error": error}, status=400)
        if self.reject_images and any(part.get("type") == "image_url" for part in _parts(body)):
            error = {"message": "Invalid content type. image_url is only supported by certain models.",
                     "type": "invalid_request_error", "param": "messages.[1].content.[1].type", "code": None}
            return web.json_response({"error": error}, status=400)
        limit = min((body[name] for name in self.limit_fields if name in body), default=None)
        step = self._script.popleft() if self._script else Scripted()
        if step.status is not None:
            headers = {"Retry-After": str(step.retry_after)} if step.retry_after is not None else {}
            error = step.error or {"error": {"message": f"fake failure {step.status}", "type": "server_error", "code": None}}
            return web.json_response(error, status=step.status, headers=headers)
        if step.text is None and self.answer_tokens is not None:
            words = self.answer_tokens if limit is None else min(self.answer_tokens, limit)
            text = "tok " * words  # one token a word: the usage below counts them
        else:
            text = step.text if step.text is not None else "echo: " + _last_user_text(body)
            words = None
        pieces = step.pieces if step.pieces is not None else _split(text, step.chunks or self.default_chunks)
        if not body.get("stream"):
            return web.json_response(_completion(body, text))
        if step.hold:
            await self._held.wait()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        for thought in step.reasoning or []:
            await _send(response, _chunk(body, {"role": "assistant", "content": None, step.reasoning_field: thought}))
        for index, piece in enumerate(pieces):
            if step.stall_after is not None and index == step.stall_after:
                await self._release.wait()
                return response
            if step.error_after is not None and index == step.error_after:
                await _send(response, step.error or {"error": {"message": "the model crashed", "type": "server_error"}})
                return response
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await _send(response, _chunk(body, {"content": piece}))
        await _send(response, _chunk(body, {}, finish=step.finish))
        if step.usage and (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 11 * len(body["messages"]), "completion_tokens": len(pieces) if words is None else words}
            if step.reasoning_tokens is not None:
                usage["completion_tokens"] += step.reasoning_tokens
                usage["completion_tokens_details"] = {"reasoning_tokens": step.reasoning_tokens}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            await _send(response, {**_chunk(body, None), "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _refused_limit(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The 400 body this server sends for the output-limit names in a request, if it refuses them."""
        sent = [name for name in ("max_completion_tokens", "max_tokens") if name in body]
        if self.exclusive_limits and len(sent) == 2:
            message = "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported."
            return {"error": {"message": message, "type": "invalid_request_error", "param": "max_tokens",
                              "code": "invalid_parameter_combination"}}
        unknown = [name for name in sent if name not in self.limit_fields]
        if unknown and self.unknown_limit_field == "reject":
            detail = [{"type": "extra_forbidden", "loc": ["body", unknown[0]], "msg": "Extra inputs are not permitted"}]
            return {"object": "error", "message": json.dumps(detail), "type": "BadRequestError", "param": None, "code": 400}
        return None

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fake"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _moderations(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.moderation_requests.append(body)
        if self.moderation_status is not None:
            error = self.moderation_body or {"error": {"message": "moderation down"}}
            return web.json_response(error, status=self.moderation_status)
        if self.moderation_body is not None:
            return web.json_response(self.moderation_body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if self.moderation_image_status is not None and any(
                isinstance(item, dict) and item.get("type") == "image_url" for item in inputs):
            error = {"message": f"Model {body.get('model')} does not support image inputs.",
                     "type": "invalid_request_error", "param": "input", "code": None}
            return web.json_response({"error": error}, status=self.moderation_image_status)
        if inputs and all(isinstance(item, dict) for item in inputs):
            inputs = [inputs]  # multimodal parts are one input with one result, as OpenAI answers them
        results = []
        for item in inputs:
            flagged = any(self._flags(part) for part in (item if isinstance(item, list) else [item]))
            results.append({
                "flagged": flagged,
                "categories": {"harassment": flagged, "violence": False},
                "category_scores": {"harassment": 0.99 if flagged else 0.01, "violence": 0.0},
            })
        return web.json_response({"id": "modr-1", "model": body.get("model", "omni-moderation-latest"), "results": results})


    def _flags(self, part: Any) -> bool:
        if isinstance(part, str):
            return any(word in part for word in self.flag_words)
        if part.get("type") == "image_url":
            return self._image_bytes_contain(part, self.flag_image_bytes)
        return any(word in part.get("text", "") for word in self.flag_words)

    @staticmethod
    def _image_bytes_contain(part: dict[str, Any], markers: set[bytes]) -> bool:
        if not markers or part.get("type") != "image_url":
            return False
        url = part["image_url"]["url"]
        data = base64.b64decode(url.split(",", 1)[1]) if url.startswith("data:") else b""
        return any(marker in data for marker in markers)


def _parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every content part of every message (messages whose content is a plain string have none)."""
    return [part for message in body.get("messages", []) if isinstance(message.get("content"), list)
            for part in message["content"]]


def _last_user_text(body: dict[str, Any]) -> str:
    """The last user message's text; content parts joined, an image shown as [image <type>, <bytes> bytes]."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(part["text"] if part.get("type") == "text" else _image_summary(part["image_url"]["url"])
                            for part in content)
    return ""


def _image_summary(url: str) -> str:
    head, _, data = url.partition(",")
    return f"[image {head.removeprefix('data:').split(';')[0]}, {len(base64.b64decode(data))} bytes]"


def _split(text: str, count: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunk(body: dict[str, Any], delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "fake"), "choices": choices}


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


async def _send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())
