"""`chatbots doctor`: check each configured credential and endpoint, and say how to fix what fails.

Every check runs concurrently under its own deadline, so doctor always finishes. Nothing it prints carries a
secret: details name variables, hosts and error codes, and the finished text is scrubbed of every configured
token and key as a last guard.

It lives in adapters/ because the Slack and Discord checks use slack_sdk and discord.py, which the core must
not import; those libraries are imported only when their platform is configured.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from chatbots.config import ConfigError, Settings
from chatbots.migrations import migrations
from chatbots.model import DEFAULT_BASE_URL
from chatbots.moderation import Moderator
from chatbots.store import SQLiteDatabase, StoreError

CHECK_TIMEOUT = 10.0
"""Seconds each check may take before it is reported as failed."""

OK, FAIL, SKIPPED = "ok", "FAIL", "skipped"

SLACK_BOT_SCOPES = frozenset({
    "app_mentions:read", "assistant:write", "channels:history", "chat:write", "commands",
    "groups:history", "im:history", "mpim:history", "reactions:read", "users:read",
})
"""The bot scopes both manifests in adapters/slack/manifests/ ask for (a test keeps the two in step)."""

SLACK_TOKEN_REFUSED = {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                       "org_login_required", "ekm_access_denied", "team_access_not_granted"}

DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)
"""Application flags GATEWAY_MESSAGE_CONTENT and GATEWAY_MESSAGE_CONTENT_LIMITED: either means the intent is on."""

DB_BUSY_TIMEOUT = 2.0
"""Seconds to wait for another process's write lock on CHATBOTS_DB before reporting the file as locked."""

MODERATION_PROBE = "Hello! What is the capital of France?"
"""A harmless input: the moderation check proves the endpoint answers, not that anything gets flagged."""


@dataclass(frozen=True, slots=True)
class Row:
    check: str
    status: str
    detail: str
    fix: str | None = None


class _Failed(Exception):
    """A check's failure: what went wrong and how to fix it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


async def doctor(settings: Settings, *, timeout: float = CHECK_TIMEOUT) -> tuple[int, str]:
    """Run every check; the exit code (0 when nothing failed, else 1) and the text to print."""
    checks: list[tuple[str, Callable[[], Awaitable[Row]], str]] = [
        ("database", lambda: _database(settings), "check CHATBOTS_DB and the disk it is on"),
        ("model server", lambda: _model_server(settings, timeout),
         f"check that {_model_base(settings)} is reachable from here (OPENAI_BASE_URL, network, proxy)"),
        ("moderation", lambda: _moderation(settings, timeout),
         "check that the moderation server (CHATBOTS_MODERATION_BASE_URL, else OPENAI_BASE_URL) is reachable, "
         "or set CHATBOTS_MODERATION=off"),
        ("slack", lambda: _slack(settings, timeout), "check that SLACK_API_URL (or slack.com) is reachable from here"),
        ("discord", lambda: _discord(settings, timeout),
         "check that DISCORD_API_URL (or discord.com) is reachable from here"),
    ]
    rows = await asyncio.gather(*(_bounded(name, run, timeout, hint) for name, run, hint in checks))
    failed = any(row.status == FAIL for row in rows)
    notes: list[str] = []
    if not settings.slack_bot_token and not settings.discord_bot_token:
        notes.append("note: no platform is configured; `chatbots run` needs SLACK_BOT_TOKEN or DISCORD_BOT_TOKEN")
    return (1 if failed else 0), _scrub(render(rows, notes), settings)


async def _bounded(name: str, run: Callable[[], Awaitable[Row]], timeout: float, timeout_fix: str) -> Row:
    """One check under its deadline; an unexpected error is a failed row, never a crashed doctor."""
    try:
        async with asyncio.timeout(timeout):
            return await run()
    except _Failed as failure:
        return Row(name, FAIL, failure.detail, failure.fix)
    except TimeoutError:
        return Row(name, FAIL, f"no answer within {timeout:g} s", timeout_fix)
    except Exception as error:  # a doctor that crashes on the one broken thing is no help
        return Row(name, FAIL, f"the check itself failed ({type(error).__name__})",
                   "this is a bug in `chatbots doctor`: please report it with this line")


def render(rows: Sequence[Row], notes: Sequence[str] = ()) -> str:
    """An aligned table (check, status, detail), then one `fix:` line per failure and any notes."""
    header = Row("check", "status", "detail")
    widths = [max(len(row.check) for row in [header, *rows]), max(len(row.status) for row in [header, *rows])]
    lines = [f"{row.check:<{widths[0]}}  {row.status:<{widths[1]}}  {row.detail}".rstrip() for row in [header, *rows]]
    fixes = [f"fix: {row.check}: {row.fix}" for row in rows if row.status == FAIL and row.fix]
    after = fixes + list(notes)
    return "\n".join(lines + ([""] + after if after else []))


def _scrub(text: str, settings: Settings) -> str:
    """The last guard: no configured secret ever reaches the output, whatever an error message carried."""
    for secret in (settings.openai_api_key, settings.moderation_api_key, settings.slack_bot_token,
                   settings.slack_app_token, settings.slack_signing_secret, settings.discord_bot_token):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def _safe_url(url: str) -> str:
    """A URL fit to print: no user, password, query or fragment."""
    try:
        parsed = yarl.URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(unparseable URL)"


# -- database ------------------------------------------------------------------------------------------------


LOCKED_FIX = ("another process kept CHATBOTS_DB locked for writing: one bot process per file; "
              "stop whatever else writes it, or point CHATBOTS_DB elsewhere")


class _RollBack(Exception):
    """Raised inside the write probe's transaction so that nothing it wrote is kept."""


async def _database(settings: Settings) -> Row:
    # sqlite blocks (up to the busy timeout on a locked file): keep it off the loop the other checks run on.
    return await asyncio.to_thread(_database_sync, settings.db_path)


def _database_sync(path: str) -> Row:
    if path != ":memory:" and os.path.isdir(path):
        raise _Failed(f"{path} is a directory",
                      f"set CHATBOTS_DB to a file path, such as {os.path.join(path, 'chatbots.db')}")
    existed = path == ":memory:" or os.path.exists(path)
    try:
        store = SQLiteDatabase.open(path, busy_timeout=DB_BUSY_TIMEOUT)
    except StoreError as error:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            fix = f"the folder {folder} does not exist: create it or point CHATBOTS_DB elsewhere"
        elif "locked" in str(error):
            fix = LOCKED_FIX
        else:
            fix = "point CHATBOTS_DB at a file this user can create and write (check the file's and folder's permissions)"
        raise _Failed(str(error).split(" (check")[0], fix) from None
    try:
        applied = len(migrations.applied(store.db))
        pending = len(migrations.pending(store.db))
        try:
            with store.db.atomic():  # a real write, rolled back: proves the file takes writes without changing it
                store.workspace_id("doctor", "write-probe")
                raise _RollBack
        except _RollBack:
            pass
        except Exception as error:  # sqlite3.Error: read-only file or folder, locked by another writer, disk full
            message = str(error)
            if "locked" in message:
                fix = LOCKED_FIX
            else:
                fix = "make the file and its folder writable by this user, or point CHATBOTS_DB elsewhere"
            raise _Failed(f"{path}: cannot write ({message})", fix) from None
    finally:
        store.close()
    if pending:
        raise _Failed(f"{path}: {pending} migrations still pending", "check CHATBOTS_DB's permissions and free disk space")
    created = "" if existed else ", created now"
    return Row("database", OK, f"{path}: {applied} migration{'s' * (applied != 1)} applied, writable{created}")


# -- model server ----------------------------------------------------------------------------------------------


def _model_base(settings: Settings) -> str:
    return _safe_url(settings.openai_base_url or DEFAULT_BASE_URL)


def _auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _model_server(settings: Settings, timeout: float) -> Row:
    if not settings.openai_api_key and not settings.openai_base_url:
        raise _Failed("OPENAI_API_KEY is not set",
                      "set OPENAI_API_KEY, or OPENAI_BASE_URL to an OpenAI-compatible server that needs no key")
    base = settings.openai_base_url or DEFAULT_BASE_URL
    shown = _safe_url(base)
    url = base.rstrip("/") + "/models"
    try:
        async with aiohttp.ClientSession(headers=_auth_headers(settings.openai_api_key),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(url) as response:
                status = response.status
                body = await response.read() if status == 200 else b""
    except TimeoutError:
        raise  # the check's deadline (or aiohttp's, which is the same): reported as such by _bounded
    except aiohttp.ClientConnectorCertificateError:
        raise _Failed(f"{shown}: TLS certificate not trusted", "check OPENAI_BASE_URL (and the host's CA certificates)") from None
    except (aiohttp.ClientError, OSError) as error:
        raise _Failed(f"cannot reach {shown} ({_describe(error)})",
                      "check OPENAI_BASE_URL and that the model server is running and reachable from here") from None
    if status in (401, 403):
        fix = ("set OPENAI_API_KEY: the server asks for a key" if not settings.openai_api_key
               else "check OPENAI_API_KEY: the server refused it")
        raise _Failed(f"{shown} refused the credentials ({status})", fix)
    if status in (404, 405, 501):
        return Row("model server", OK, f"{shown}: reachable (no model list offered)")
    if status == 429:
        raise _Failed(f"{shown} answered 429 (rate limit or quota)",
                      "check the key's quota and billing with the provider behind OPENAI_BASE_URL, or try again later")
    if status != 200:
        raise _Failed(f"{shown} answered {status} to GET /models",
                      "check OPENAI_BASE_URL points at the server's OpenAI-compatible API (often ending in /v1) and its logs")
    models = _model_ids(body)
    if models is None:
        return Row("model server", OK, f"{shown}: reachable (no model list offered)")
    if settings.model not in models:
        offered = ", ".join(sorted(models)[:8]) + (", ..." if len(models) > 8 else "")
        raise _Failed(f"{shown}: model {settings.model} is not among its {len(models)} models",
                      f"set CHATBOTS_MODEL to one the server offers ({offered or 'none listed'})")
    return Row("model server", OK, f"{shown}: {len(models)} models, {settings.model} among them")


def _model_ids(body: bytes) -> set[str] | None:
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


# -- moderation ------------------------------------------------------------------------------------------------

MODERATION_ELSEWHERE = ("set CHATBOTS_MODERATION_BASE_URL to a server with a /moderations endpoint (chat servers such "
                        "as Ollama, vLLM and llama.cpp have none), or CHATBOTS_MODERATION=off")


async def _moderation(settings: Settings, timeout: float) -> Row:
    moderator = Moderator.from_settings(settings)
    if moderator is None:
        return Row("moderation", SKIPPED, "CHATBOTS_MODERATION=off")
    shown = _safe_url(moderator.url)
    if not moderator.api_key and moderator.url == DEFAULT_BASE_URL + "/moderations":
        raise _Failed("no key for OpenAI's moderation endpoint",
                      "set CHATBOTS_MODERATION_API_KEY (or OPENAI_API_KEY), or CHATBOTS_MODERATION_BASE_URL, "
                      "or CHATBOTS_MODERATION=off")
    consequence = ("every message would be refused" if moderator.block_on_error
                   else "messages would go unmoderated")
    try:
        async with aiohttp.ClientSession(headers=_auth_headers(moderator.api_key),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(moderator.url, json={"model": moderator.model, "input": MODERATION_PROBE}) as response:
                status = response.status
                body = await response.read() if status == 200 else b""
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as error:
        raise _Failed(f"cannot reach {shown} ({_describe(error)}); {consequence}",
                      "check CHATBOTS_MODERATION_BASE_URL (else OPENAI_BASE_URL is used), or set CHATBOTS_MODERATION=off") from None
    if status in (404, 405, 501):
        raise _Failed(f"{shown}: no moderation endpoint ({status}); {consequence}", MODERATION_ELSEWHERE)
    if status in (401, 403):
        raise _Failed(f"{shown} refused the credentials ({status}); {consequence}",
                      "check CHATBOTS_MODERATION_API_KEY (else OPENAI_API_KEY is used), or set CHATBOTS_MODERATION=off")
    if status in (400, 422):
        raise _Failed(f"{shown} rejected the request ({status}); {consequence}",
                      f"check CHATBOTS_MODERATION_MODEL ({moderator.model}) is a moderation model this server has")
    if status != 200:
        raise _Failed(f"{shown} answered {status}; {consequence}",
                      "check the moderation server's health; " + MODERATION_ELSEWHERE)
    try:
        results = json.loads(body)["results"]
        if not isinstance(results, list) or not results:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise _Failed(f"{shown} answered, but not with moderation results; {consequence}", MODERATION_ELSEWHERE) from None
    return Row("moderation", OK, f"{shown}: answers ({moderator.model}; on error: {settings.moderation_on_error})")


# -- Slack -----------------------------------------------------------------------------------------------------


async def _slack(settings: Settings, timeout: float) -> Row:
    if not settings.slack_bot_token:
        return Row("slack", SKIPPED, "SLACK_BOT_TOKEN not set")
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    base_url = settings.slack_api_url or AsyncWebClient.BASE_URL
    if not base_url.endswith("/"):
        base_url += "/"
    client = AsyncWebClient(token=settings.slack_bot_token, base_url=base_url, timeout=max(1, int(timeout)))
    try:
        identity = await client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error") or f"HTTP {error.response.status_code}"
        if code in SLACK_TOKEN_REFUSED:
            raise _Failed(f"SLACK_BOT_TOKEN was refused ({code})",
                          "copy SLACK_BOT_TOKEN again from the app's OAuth & Permissions page (Bot User OAuth Token, "
                          "xoxb-...); reinstall the app to the workspace if it was removed") from None
        raise _Failed(f"auth.test failed ({code})", "check SLACK_BOT_TOKEN and SLACK_API_URL") from None
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as error:
        raise _Failed(f"cannot reach Slack at {_safe_url(base_url)} ({_describe(error)})",
                      "check SLACK_API_URL (unset means Slack's own) and the network") from None
    who = (f"team {identity.get('team')} ({identity.get('team_id')}), "
           f"bot user {identity.get('user')} ({identity.get('user_id')})")
    problems: list[str] = []
    fixes: list[str] = []
    if not settings.slack_bot_token.startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN is not a bot token")
        fixes.append("use the Bot User OAuth Token (xoxb-...) as SLACK_BOT_TOKEN, not a user or app token")
    granted = next((value for name, value in (identity.headers or {}).items() if name.lower() == "x-oauth-scopes"), None)
    if granted is not None:
        missing = sorted(SLACK_BOT_SCOPES - {scope.strip() for scope in granted.split(",")})
        if missing:
            problems.append(f"missing scopes {', '.join(missing)}")
            fixes.append(f"add the bot scopes {', '.join(missing)} (OAuth & Permissions, or re-create the app from "
                         "adapters/slack/manifests/) and reinstall the app to the workspace")
    if settings.slack_app_token:
        mode = "Socket Mode"
        try:
            await client.apps_connections_open(app_token=settings.slack_app_token)
            mode += " (app token works)"
        except SlackApiError as error:
            code = error.response.get("error") or f"HTTP {error.response.status_code}"
            problems.append(f"SLACK_APP_TOKEN was refused ({code})")
            if code == "missing_scope":
                fixes.append("give the app-level token the connections:write scope (Basic Information > App-Level "
                             "Tokens) and put it in SLACK_APP_TOKEN")
            elif code == "not_allowed_token_type":
                fixes.append("SLACK_APP_TOKEN must be an app-level token (xapp-...) from Basic Information > "
                             "App-Level Tokens, with connections:write")
            else:
                fixes.append("create an app-level token with connections:write (Basic Information > App-Level "
                             "Tokens) and put it in SLACK_APP_TOKEN; enable Socket Mode for the app")
    else:
        mode = "HTTP mode"
        if not settings.slack_signing_secret:
            problems.append("SLACK_SIGNING_SECRET not set")
            fixes.append("set SLACK_SIGNING_SECRET (Basic Information > Signing Secret), or SLACK_APP_TOKEN for "
                         "Socket Mode")
        else:
            mode += " (signing secret set)"
    if problems:
        raise _Failed(f"{who}, {mode}: " + "; ".join(problems), "; ".join(fixes))
    return Row("slack", OK, f"{who}, {mode}")


# -- Discord ---------------------------------------------------------------------------------------------------


async def _discord(settings: Settings, timeout: float) -> Row:
    if not settings.discord_bot_token:
        return Row("discord", SKIPPED, "DISCORD_BOT_TOKEN not set")
    import discord

    from .discord.connection import Endpoints, build_client

    try:
        endpoints = Endpoints.from_settings(settings)
    except ConfigError as error:
        raise _Failed(str(error).split(", got")[0], "fix the URL in DISCORD_API_URL / DISCORD_GATEWAY_URL") from None
    endpoints.apply()
    client = build_client()
    try:
        try:
            await client.login(settings.discord_bot_token)
        except discord.LoginFailure:
            raise _Failed("DISCORD_BOT_TOKEN was refused (401 Unauthorized)",
                          "copy DISCORD_BOT_TOKEN again from the Developer Portal (Bot > Reset Token)") from None
        except discord.HTTPException as error:
            raise _Failed(f"{_safe_url(endpoints.api)} answered {error.status} to the login",
                          "check DISCORD_API_URL (unset means Discord's own) and Discord's status") from None
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as error:
            raise _Failed(f"cannot reach the Discord API at {_safe_url(endpoints.api)} ({_describe(error)})",
                          "check DISCORD_API_URL (unset means Discord's own) and the network") from None
        user = client.user
        who = f"bot {user.name} ({user.id})" if user else "logged in"
        try:
            app: Any = client.application or await client.application_info()
        except (discord.HTTPException, aiohttp.ClientError):
            return Row("discord", OK, f"{who}; message content intent: unknown (no application info)")
        flags = getattr(getattr(app, "flags", None), "value", None)
        if flags is None:
            return Row("discord", OK, f"{who}; message content intent: unknown")
        if not flags & DISCORD_MESSAGE_CONTENT:
            raise _Failed(f"{who}; the message content intent is off",
                          "enable MESSAGE CONTENT INTENT in the Discord Developer Portal (Bot > Privileged Gateway "
                          "Intents); without it the gateway refuses the bot")
        return Row("discord", OK, f"{who}; message content intent enabled")
    finally:
        await client.close()
        endpoints.restore()


def _describe(error: BaseException) -> str:
    """An exception as a short phrase with no URL parameters or secrets: its type and OS error text."""
    os_error = getattr(error, "os_error", None)
    reason = getattr(os_error, "strerror", None) or getattr(error, "strerror", None)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
