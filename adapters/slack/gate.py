"""The door of Slack's HTTP endpoint: a request's signature headers are checked before its body is read.

Anyone on the internet can reach `/slack/events`, and only the body's HMAC proves a request came from Slack. So
the cheap checks come first and the costly one last, each with a bound:

1. Headers alone (no body read): exactly one `X-Slack-Request-Timestamp` of ASCII digits within five minutes of
   now, and exactly one `X-Slack-Signature` of `v0=` and 64 lowercase hex digits (what Slack sends). Otherwise 401.
2. Size: a `Content-Length` above `MAX_BODY` is refused (413) without reading; a body without one (chunked) is
   refused as soon as it grows past the bound.
3. Concurrency: at most `MAX_READING` bodies are read at once before their signature is known; beyond that, 503
   (Slack redelivers), so forged requests cannot pile up memory.
4. Time: the whole body must arrive within `BODY_TIMEOUT` seconds (408), so a trickling sender cannot hold a slot.
5. Then the HMAC over `v0:{timestamp}:{body}`, compared in constant time (401).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

MAX_BODY = 1024 * 1024
"""Bytes. Slack truncates message text at 40,000 characters; its largest event, message_changed, carries the old
and new message, each as text and as rich-text blocks: four copies, at most 640 KB in UTF-8. Slash commands and
interactive payloads are smaller. 1 MiB holds that with room for the envelope."""
BODY_TIMEOUT = 10.0
"""Seconds for a whole body to arrive. Slack sends it at once and wants an answer within 3 s."""
MAX_READING = 32
"""Bodies read at once before their signature is checked: at most 32 MiB held for unverified senders. A real
Slack body takes well under a millisecond to read, so this never delays Slack."""
MAX_AGE = 300
"""Seconds a request timestamp may differ from now (Slack's own rule): older requests are replays."""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class Refusal(Exception):
    """Why a request was turned away, as the response it gets. Says nothing a forger could learn from."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers or {}

    def response(self) -> web.Response:
        response = web.Response(status=self.status, text=self.text, headers=self.headers)
        response.force_close()  # the rest of an unread body is not worth keeping the connection for
        return response


class RequestGate:
    """Reads a Slack request's body only once its headers could be Slack's, and returns it only if signed."""

    def __init__(self, signing_secret: str, *, clock: Callable[[], float] = time.time, max_body: int = MAX_BODY,
                 body_timeout: float = BODY_TIMEOUT, max_reading: int = MAX_READING) -> None:
        if not signing_secret.strip():
            raise ValueError("a signing secret is needed to check requests")
        self._secret = signing_secret.encode()
        self.clock = clock
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.max_reading = max_reading
        self.reading = 0
        """Bodies being read right now, their signature not yet known."""

    async def admit(self, request: web.Request) -> bytes:
        """The body of a correctly signed request; raises Refusal otherwise."""
        timestamp, signature = self._check_headers(request)
        length = request.content_length
        if length is not None and length > self.max_body:
            raise Refusal(413, "request body too large")
        if self.reading >= self.max_reading:
            raise Refusal(503, "busy", {"Retry-After": "1"})
        self.reading += 1
        try:
            body = await self._read(request)
        finally:
            self.reading -= 1
        expected = b"v0=" + hmac.new(self._secret, b"v0:" + timestamp + b":" + body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, signature):
            raise Refusal(401, "invalid signature")
        return body

    def _check_headers(self, request: web.Request) -> tuple[bytes, bytes]:
        """The timestamp and signature, if both are well formed and fresh; nothing else is parsed unverified."""
        timestamps = request.headers.getall("X-Slack-Request-Timestamp", [])
        signatures = request.headers.getall("X-Slack-Signature", [])
        if len(timestamps) != 1 or len(signatures) != 1:
            raise Refusal(401, "invalid signature")
        timestamp, signature = timestamps[0], signatures[0]
        if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
            raise Refusal(401, "invalid signature")
        if abs(self.clock() - int(timestamp)) > MAX_AGE:
            raise Refusal(401, "stale request")
        return timestamp.encode(), signature.encode()

    async def _read(self, request: web.Request) -> bytes:
        """The body, bounded in size while it arrives and in the time it may take."""
        chunks: list[bytes] = []  # joined once at the end: growing one buffer would copy it over and over
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > self.max_body:
                        raise Refusal(413, "request body too large")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(408, "request body too slow") from None
        except (ConnectionResetError, HttpProcessingError):  # the sender left midway, or broke the chunked encoding
            raise Refusal(400, "malformed or incomplete request body") from None
        return b"".join(chunks)
