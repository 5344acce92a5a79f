"""HTTP mode: signing and posting requests the way Slack does, and serving an app on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web


# --------------------------------------------------------------------------------------
# HTTP mode: signing and posting
# --------------------------------------------------------------------------------------


def sign_request(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with every HTTP request: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


async def post_signed(
    session: aiohttp.ClientSession | None,
    url: str,
    body: dict[str, Any] | str | bytes,
    signing_secret: str,
    *,
    json_body: bool = True,
    retry_num: int | None = None,
    retry_reason: str | None = None,
    timestamp: int | None = None,
) -> tuple[int, str]:
    """POST ``body`` to ``url`` signed like Slack; return (status, response text).

    ``json_body=True`` sends an Events API body as application/json; False sends a slash
    command / interactive form as application/x-www-form-urlencoded. ``session`` may be
    None (a short-lived session is used). Retries carry X-Slack-Retry-Num / -Reason.
    """
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    elif json_body:
        raw = json.dumps(body).encode()
    else:
        raw = urlencode(body).encode()
    headers = {
        "Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sign_request(signing_secret, raw, timestamp),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    elif retry_reason is not None:
        headers["X-Slack-Retry-Reason"] = retry_reason

    async def send(s: aiohttp.ClientSession) -> tuple[int, str]:
        async with s.post(url, data=raw, headers=headers) as resp:
            return resp.status, await resp.text()

    if session is not None:
        return await send(session)
    async with aiohttp.ClientSession() as own:
        return await send(own)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app (e.g. Bolt's ``app.web_app()``) on 127.0.0.1; yield its base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
