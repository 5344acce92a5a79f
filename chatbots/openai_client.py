"""One client for an OpenAI-compatible server: its base URL, credentials, extra headers and one aiohttp session.

Chat streaming (model.py), moderation (moderation.py), model listing and `chatbots doctor` all reach the server
through an instance of this class, so the gateway and Azure-style headers (CHATBOTS_MODEL_HEADERS, OPENAI_ORG_ID,
OPENAI_PROJECT_ID) are applied in this one place. A moderation server configured apart gets its own instance.
Header values are never logged: they often carry keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .config import Config

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection; each call sets its own deadline for the rest."""
ERROR_BODY_LIMIT = 65_536
"""Bytes of an error response read to classify it (failures.py)."""
CONNECTION_LIMIT = 200
"""Connections open at once to one server. Chat streams and moderation calls share them, and each had aiohttp's
default 100 to itself: moderating a new message must not queue behind a hundred open answers."""


def extra_headers(settings: Config) -> dict[str, str]:
    """The headers sent to the chat server besides the key: organisation, project, then CHATBOTS_MODEL_HEADERS."""
    headers: dict[str, str] = {}
    if settings.openai_org_id:
        headers["OpenAI-Organization"] = settings.openai_org_id
    if settings.openai_project_id:
        headers["OpenAI-Project"] = settings.openai_project_id
    headers.update(settings.model_headers)
    return headers


class OpenAIClient:
    """The connection to one OpenAI-compatible server, shared by every kind of call made to it."""

    def __init__(self, base_url: str, api_key: str | None, headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_chat(cls, settings: Config) -> OpenAIClient:
        return cls(settings.openai_base_url or DEFAULT_BASE_URL, settings.openai_api_key, extra_headers(settings))

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def serves(self, base_url: str, api_key: str | None) -> bool:
        """Whether calls to this server with this key can share this client."""
        return self.base_url == base_url.rstrip("/") and self.api_key == api_key

    def session(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use (and again after close)."""
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            headers.update(self.headers)  # after the key: a gateway may want its own Authorization
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT), headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post_json(self, path: str, body: Any, timeout: float) -> tuple[int, bytes]:
        """POST a JSON body; the status and the body (an error's only up to ERROR_BODY_LIMIT bytes: enough to tell
        what kind of error it is)."""
        async with self.session().post(self.url(path), json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await (response.read() if response.status == 200 else response.content.read(ERROR_BODY_LIMIT))

    async def get_any(self, path: str, timeout: float) -> tuple[int, bytes]:
        """GET a path; the status and the body (an error's only up to ERROR_BODY_LIMIT bytes)."""
        async with self.session().get(self.url(path), timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await (response.read() if response.status == 200 else response.content.read(ERROR_BODY_LIMIT))

    async def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """GET a path; the status and the body (an error's only up to ERROR_BODY_LIMIT bytes)."""
        async with self.session().get(self.url(path), timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await (response.read() if response.status == 200 else response.content.read(ERROR_BODY_LIMIT))

    async def list_models(self, timeout: float = 10.0) -> list[str] | None:
        """The server's model ids, or None when it does not offer a list (or cannot be reached)."""
        try:
            status, body = await self.get("models", timeout)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        found = model_ids(body) if status == 200 else None
        return sorted(found) if found is not None else None


def model_ids(body: bytes) -> set[str] | None:
    """Model ids from an OpenAI-style list ({"data": [{"id": ...}]}), or None when the body is no such list."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    entries = payload.get("data", payload.get("models")) if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        return None
    ids = {str(entry.get("id") or entry.get("name")) for entry in entries if isinstance(entry, dict)}
    ids.discard("None")
    return ids
