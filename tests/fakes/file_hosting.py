"""File downloads for the fake platforms, and a stand-in for a host no download may reach.

Both fakes serve shared files over real HTTP on their own host:port, as Slack's files.slack.com and Discord's
CDN do, so the bot's real download path runs: headers, redirects, status codes, streamed bodies. Every request
is recorded (with its Authorization header), so a test can prove what was fetched with which credentials, and
faults can be injected per path: a status, a redirect, a body that stalls midway.

``ForeignHost`` is a separate server on another port that only counts hits: a payload URL pointing there must
never be fetched, and ``hits == []`` proves it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class DownloadRequest:
    """One request for a file, as the host saw it."""

    path: str
    query: str
    authorization: str | None
    status: int = 0
    sent: int = 0
    """Body bytes the host managed to send before it finished or the client hung up."""
    t: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the host is finished with the request (sent it all, or the client went away)."""


@dataclass
class _Fault:
    status: int
    location: str | None = None


class FileHosting:
    """Stored files served at their paths; records, faults and a stall switch for tests."""

    STALL_AFTER = 1024
    """Bytes sent before a stalled download stops sending (the headers and a little body are already out)."""

    def __init__(self, changed: Callable[[], None] = lambda: None) -> None:
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.requests: list[DownloadRequest] = []
        self._faults: dict[str, _Fault] = {}
        self._changed = changed
        self.stall = False
        """While True, downloads send their headers and STALL_AFTER bytes, then wait until released."""
        self.declare_length = True
        """False: bodies go out chunked, with no Content-Length (a host that does not say how much is coming)."""
        self.content_encoding: str | None = None
        """Sent as Content-Encoding with every file (the body is sent as stored): a host compressing downloads."""
        self._released = asyncio.Event()

    def stall_downloads(self) -> None:
        """From now on downloads stop after STALL_AFTER bytes, until release()."""
        self.stall = True
        self._released = asyncio.Event()

    def put(self, path: str, content: bytes, content_type: str) -> None:
        self.blobs[path] = (content, content_type)

    def fail(self, path: str, status: int) -> None:
        """Answer this path with `status` (and no file) from now on."""
        self._faults[path] = _Fault(status)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer this path with a redirect to `location` (absolute or relative) from now on."""
        self._faults[path] = _Fault(status, location)

    def release(self) -> None:
        """Let stalled downloads finish (tests call it before the fake stops)."""
        self.stall = False
        self._released.set()

    def hits(self, path: str) -> list[DownloadRequest]:
        return [r for r in self.requests if r.path == path]

    async def serve(self, request: web.Request, path: str, *, refuse: web.Response | None = None) -> web.StreamResponse:
        """Answer a download of `path`; `refuse` (e.g. a 401 for a missing token) is sent instead when given."""
        record = DownloadRequest(path, request.query_string, request.headers.get("Authorization"))
        self.requests.append(record)
        try:
            return await self._send(request, record, self._answer(path, refuse))
        finally:
            record.done.set()
            self._changed()

    async def _send(self, request: web.Request, record: DownloadRequest,
                    answer: web.Response | tuple[bytes, str]) -> web.StreamResponse:
        if isinstance(answer, web.Response):
            record.status = answer.status
            return answer
        content, content_type = answer
        record.status = 200
        headers = {"Content-Type": content_type}
        if self.content_encoding is not None:
            headers["Content-Encoding"] = self.content_encoding
        if self.declare_length:
            headers["Content-Length"] = str(len(content))
        stream = web.StreamResponse(headers=headers)
        if not self.declare_length:
            stream.enable_chunked_encoding()
        await stream.prepare(request)
        try:
            if self.stall:
                released = self._released
                await stream.write(content[: self.STALL_AFTER])
                record.sent = min(len(content), self.STALL_AFTER)
                await released.wait()
                content = content[self.STALL_AFTER :]
            for start in range(0, len(content), 64 * 1024):
                await stream.write(content[start : start + 64 * 1024])
                record.sent += len(content[start : start + 64 * 1024])
            await stream.write_eof()
        except (ConnectionError, OSError):
            pass  # the client hung up: what was sent is recorded
        return stream

    def _answer(self, path: str, refuse: web.Response | None) -> web.Response | tuple[bytes, str]:
        if refuse is not None:
            return refuse
        fault = self._faults.get(path)
        if fault is not None and fault.location is not None:
            return web.Response(status=fault.status, headers={"Location": fault.location})
        if fault is not None:
            return web.Response(status=fault.status, text=f"{fault.status}")
        blob = self.blobs.get(path)
        if blob is None:
            return web.Response(status=404, text="Not Found")
        return blob


class ForeignHost:
    """A server on another port that must never be reached: it records every hit and answers a small body."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForeignHost:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._hit)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hit(self, request: web.Request) -> web.Response:
        self.hits.append(request.path_qs)
        return web.Response(body=b"internal secrets", content_type="application/octet-stream")
