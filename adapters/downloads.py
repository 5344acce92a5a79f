"""Fetching shared files, for every platform: only from the platform's own file hosts, bounded in size and time.

A payload's URL is untrusted (a proxy, a compromised or Discord-compatible server, a crafted event can put any
address there), so a download goes only to an origin on the platform's list: its real file hosts over https, and
the configured API server's own origin (SLACK_API_URL, DISCORD_API_URL). Anything else is refused before a
request is made, redirects included. Bodies are streamed and abandoned as soon as they pass the byte limit;
nothing is written to disk, and neither contents nor URLs are logged.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from chatbots.types import FileTooLarge, FileUnavailable, SharedFile

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
MAX_NAME_CHARS = 255
"""File names come from the payload: they are shown to people and the model, so they are kept short and printable."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Origin = tuple[str, str, int]
"""(scheme, host, port): what a URL must match exactly to be fetched."""


def origin_of(url: URL) -> Origin | None:
    """The URL's origin, or None when it is not a plain absolute http(s) URL (no credentials in it)."""
    if url.scheme not in ("http", "https") or not url.host or url.user is not None or url.password is not None:
        return None
    if url.port is None:
        return None
    return url.scheme, url.host.lower(), url.port


@dataclass(frozen=True, slots=True)
class FileHosts:
    """Where one platform's files may be fetched from."""

    platform: str
    """As people know it ("Slack", "Discord"): named in the reasons shown to them."""
    origins: frozenset[Origin]

    @classmethod
    def of(cls, platform: str, hosts: Iterable[str], api_url: str | None) -> FileHosts:
        """The platform's real file hosts over https, plus the configured API server's own origin when one is set."""
        origins = {("https", host, 443) for host in hosts}
        if api_url:
            configured = origin_of(URL(api_url))
            if configured is not None:
                origins.add(configured)
        return cls(platform, frozenset(origins))

    def allows(self, url: URL) -> bool:
        found = origin_of(url)
        return found is not None and found in self.origins


def file_name(value: object, fallback: str = "file") -> str:
    """A payload's file name as something safe to show: printable, one line, bounded."""
    if not isinstance(value, str):
        return fallback
    cleaned = "".join(ch for ch in value[: MAX_NAME_CHARS * 4] if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:MAX_NAME_CHARS] or fallback


def file_size(value: object) -> int | None:
    """A payload's size in bytes, or None when it is missing or not a sane number."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def unavailable(name: str, mimetype: str, size: int | None, reason: str) -> SharedFile:
    """A file the platform reported but that cannot be fetched (deleted, external, no URL): its download says why."""

    async def refuse(max_bytes: int, timeout: float) -> bytes:
        raise FileUnavailable(reason)

    return SharedFile(name, mimetype, size, refuse)


def readable_size(count: int) -> str:
    """Bytes as people read them: "10 MB", "512 KB", "300 bytes"."""
    for unit, factor in (("MB", 1_000_000), ("KB", 1_000)):
        if count >= factor:
            return f"{count / factor:.3g} {unit}"
    return f"{count} bytes"


class Downloader:
    """Downloads for one platform service: one HTTP session, reused for every file, closed with the service."""

    def __init__(self, hosts: FileHosts, headers: Mapping[str, str] | None = None, *,
                 refused_as_html: str | None = None) -> None:
        self.hosts = hosts
        self._headers = dict(headers or {})
        """Sent with every request; only ever to the allowed origins, which all belong to the platform."""
        self._refused_as_html = refused_as_html
        """When set: an HTML page answering a non-HTML file is the platform refusing (Slack's login page), this says why."""
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def file(self, name: str, mimetype: str, size: int | None, url: object,
             headers: Mapping[str, str] | None = None) -> SharedFile:
        """A SharedFile fetched from url; a URL off the platform's hosts gives one whose download refuses at once.
        headers replace the downloader's own for this file (a workspace's own token)."""
        if not isinstance(url, str) or not url:
            return unavailable(name, mimetype, size, f"{self.hosts.platform} gave no address to download it from")
        try:
            target = URL(url)
        except (ValueError, TypeError):
            target = None
        if target is None or not self.hosts.allows(target):
            log.info("%s: refused to fetch a shared file from a host outside its file servers", self.hosts.platform)
            return unavailable(name, mimetype, size, f"not fetched: its address is not on {self.hosts.platform}'s file servers")
        expects_html = mimetype.split(";", 1)[0].strip().lower() in ("text/html", "application/xhtml+xml")

        async def download(max_bytes: int, timeout: float) -> bytes:
            return await self.fetch(target, max_bytes, timeout, html_ok=expects_html, headers=headers)

        return SharedFile(name, mimetype, size, download)

    async def fetch(self, url: URL, max_bytes: int, timeout: float, *, html_ok: bool = True,
                    headers: Mapping[str, str] | None = None) -> bytes:
        """The body at url (an allowed origin), at most max_bytes, within timeout seconds for the whole download."""
        try:
            async with asyncio.timeout(timeout):
                return await self._fetch(url, max_bytes, html_ok, headers)
        except TimeoutError:
            log.info("%s: a shared file's download timed out", self.hosts.platform)
            raise FileUnavailable(f"the download took longer than {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            log.info("%s: a shared file's download failed (%s)", self.hosts.platform, type(error).__name__)
            raise FileUnavailable(_phrase(error)) from None

    async def _fetch(self, url: URL, max_bytes: int, html_ok: bool, headers: Mapping[str, str] | None) -> bytes:
        session = self._open()
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(url, headers=self._headers if headers is None else headers,
                                   allow_redirects=False) as response:
                if response.status in REDIRECTS:
                    url = self._redirect(url, response.headers.get("Location"))
                    continue
                if response.status != 200:
                    log.info("%s: a shared file's download answered HTTP %s", self.hosts.platform, response.status)
                    raise FileUnavailable(f"HTTP {response.status}")
                encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    raise FileUnavailable(f"the server sent it {encoding}-encoded")
                if self._refused_as_html is not None and not html_ok and response.content_type == "text/html":
                    log.info("%s: a shared file's download answered a web page instead", self.hosts.platform)
                    raise FileUnavailable(self._refused_as_html)
                return await _read_at_most(response, max_bytes)
        raise FileUnavailable("too many redirects")

    def _redirect(self, current: URL, location: str | None) -> URL:
        if not location:
            raise FileUnavailable("a redirect without a target")
        try:
            target = current.join(URL(location))
        except (ValueError, TypeError):
            raise FileUnavailable("a malformed redirect") from None
        if not self.hosts.allows(target):
            log.info("%s: refused a shared file's redirect off its file servers", self.hosts.platform)
            raise FileUnavailable(f"not fetched: it was redirected away from {self.hosts.platform}'s file servers")
        return target

    def _open(self) -> aiohttp.ClientSession:
        """The service's session, made on first use (inside the running loop). No cookies, no proxies from the
        environment, no automatic decompression (a small compressed body could inflate past any limit)."""
        if self._closed:
            raise FileUnavailable("the bot is shutting down")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                headers={"Accept-Encoding": "identity"},
            )
        return self._session

    async def close(self) -> None:
        """Close the session; a download asked for later is refused rather than opening a new one."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_at_most(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, streamed; abandoned (connection closed) as soon as it would pass max_bytes."""
    too_big = FileTooLarge(f"larger than the {readable_size(max_bytes)} limit")
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        response.close()
        raise too_big
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            response.close()
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def _phrase(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return "could not connect"
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "the connection broke off"
    return "connection error"
