"""The core's `chatbots doctor` checks: the database, the model server and moderation, over the one OpenAIClient.

Each check returns an ok or skipped Row, or raises CheckFailed with what went wrong and how to fix it; the outer
layer (adapters/doctor.py) runs them beside the platforms' checks under one deadline each. Details name
variables, hosts and error codes, never a secret.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import yarl

from .config import Config
from .failures import FailureKind, classify
from .migrations import migrations
from .moderation import Moderator, moderation_failure
from .openai_client import DEFAULT_BASE_URL, OpenAIClient, model_ids
from .store import SQLiteDatabase, StoreError

OK, FAIL, SKIPPED = "ok", "FAIL", "skipped"

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


@dataclass(frozen=True, slots=True)
class Check:
    """One named check, and the fix to print if it does not finish before the deadline."""

    name: str
    run: Callable[[], Awaitable[Row]]
    timeout_fix: str


class CheckFailed(Exception):
    """A check's failure: what went wrong and how to fix it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


def safe_url(url: str) -> str:
    """A URL fit to print: no user, password, query or fragment."""
    try:
        parsed = yarl.URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "(unparseable URL)"


def describe(error: BaseException) -> str:
    """An exception as a short phrase with no URL parameters or secrets: its type and OS error text."""
    os_error = getattr(error, "os_error", None)
    reason = getattr(os_error, "strerror", None) or getattr(error, "strerror", None)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


@asynccontextmanager
async def core_checks(settings: Config, timeout: float) -> AsyncIterator[list[Check]]:
    """The core's checks, over one client per server (closed when the block ends)."""
    chat = OpenAIClient.for_chat(settings)
    moderator = Moderator.from_settings(settings, chat)
    try:
        yield [
            Check("database", lambda: database(settings), "check CHATBOTS_DB and the disk it is on"),
            Check("model server", lambda: model_server(settings, chat, timeout),
                  f"check that {safe_url(chat.base_url)} is reachable from here (OPENAI_BASE_URL, network, proxy)"),
            Check("moderation", lambda: moderation(settings, moderator, timeout),
                  "check that the moderation server (CHATBOTS_MODERATION_BASE_URL, else OPENAI_BASE_URL) is reachable, "
                  "or set CHATBOTS_MODERATION=off"),
        ]
    finally:
        if moderator is not None:
            await moderator.close()
        await chat.close()


# -- database ------------------------------------------------------------------------------------------------


LOCKED_FIX = ("another process kept CHATBOTS_DB locked for writing: one bot process per file; "
              "stop whatever else writes it, or point CHATBOTS_DB elsewhere")


class _RollBack(Exception):
    """Raised inside the write probe's transaction so that nothing it wrote is kept."""


async def database(settings: Config) -> Row:
    # Database calls block (up to the busy timeout on a locked file): keep them off the loop the other checks run on.
    if settings.database_url:
        return await asyncio.to_thread(_postgres_sync, settings.database_url)
    return await asyncio.to_thread(_database_sync, settings.db_path)


def _postgres_sync(url: str) -> Row:
    """Reachable, migrated and writable, checked without changing anything (the write probe is rolled back)."""
    from .store.postgres import PostgresDatabase, safe_url

    try:
        database = PostgresDatabase.connect(url)
    except StoreError as error:
        raise CheckFailed(str(error).split(" (check")[0],
                          "check DATABASE_URL (host, port, user, password, database name) and that the server accepts "
                          "connections from this host") from None
    try:
        applied, pending = database.applied_migrations()
        try:
            with database.transaction():
                database.workspace_id("doctor", "write-probe")
                raise _RollBack
        except _RollBack:
            pass
        except Exception as error:  # psycopg.Error: a read-only replica, no privileges, disk full
            raise CheckFailed(f"{safe_url(url)}: cannot write ({str(error).strip().splitlines()[0]})",
                              "grant this user INSERT/UPDATE/DELETE on the bot's tables, and point DATABASE_URL at the "
                              "primary, not a read-only replica") from None
    finally:
        database.close()
    if pending:
        raise CheckFailed(f"{safe_url(url)}: {len(pending)} migrations pending",
                          "start `chatbots run` once (it migrates at start-up), with a user allowed to create tables")
    return Row("database", OK, f"{safe_url(url)}: {len(applied)} migrations applied, writable")


def _database_sync(path: str) -> Row:
    if path != ":memory:" and os.path.isdir(path):
        raise CheckFailed(f"{path} is a directory",
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
        raise CheckFailed(str(error).split(" (check")[0], fix) from None
    try:
        applied = len(migrations.applied(store.db))
        pending = len(migrations.pending(store.db))
        try:
            with store.transaction():  # a real write, rolled back: proves the file takes writes without changing it
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
            raise CheckFailed(f"{path}: cannot write ({message})", fix) from None
    finally:
        store.close()
    if pending:
        raise CheckFailed(f"{path}: {pending} migrations still pending", "check CHATBOTS_DB's permissions and free disk space")
    created = "" if existed else ", created now"
    return Row("database", OK, f"{path}: {applied} migration{'s' * (applied != 1)} applied, writable{created}")


# -- model server ----------------------------------------------------------------------------------------------


async def model_server(settings: Config, chat: OpenAIClient, timeout: float) -> Row:
    if not settings.openai_api_key and not settings.openai_base_url:
        raise CheckFailed("OPENAI_API_KEY is not set",
                          "set OPENAI_API_KEY, or OPENAI_BASE_URL to an OpenAI-compatible server that needs no key")
    shown = safe_url(chat.base_url)
    try:
        status, body = await chat.get("models", timeout)
    except TimeoutError:
        raise  # the check's deadline (or aiohttp's, which is the same): reported as such by the runner
    except aiohttp.ClientConnectorCertificateError:
        raise CheckFailed(f"{shown}: TLS certificate not trusted",
                          "check OPENAI_BASE_URL (and the host's CA certificates)") from None
    except (aiohttp.ClientError, OSError) as error:
        raise CheckFailed(f"cannot reach {shown} ({describe(error)})",
                          "check OPENAI_BASE_URL and that the model server is running and reachable from here") from None
    if status in (404, 405, 501):
        return Row("model server", OK, f"{shown}: reachable (no model list offered)")
    if status != 200:
        failure = classify(status, body)
        raise CheckFailed(f"{shown}: {KIND_PHRASES.get(failure.kind, 'answered an error')} to GET /models "
                          f"({failure.details()})", _model_fix(failure.kind, settings))
    models = model_ids(body)
    if models is None:
        return Row("model server", OK, f"{shown}: reachable (no model list offered)")
    if settings.model not in models:
        offered = ", ".join(sorted(models)[:8]) + (", ..." if len(models) > 8 else "")
        raise CheckFailed(f"{shown}: model {settings.model} not served by this gateway: available are {offered or 'none'}",
                          f"set CHATBOTS_MODEL to one the server offers ({offered or 'none listed'}), or have the "
                          "gateway serve it")
    return Row("model server", OK, f"{shown}: {len(models)} models, {settings.model} among them")


KIND_PHRASES = {
    FailureKind.KEY_REFUSED: "key refused",
    FailureKind.MODEL_UNKNOWN: "model not served",
    FailureKind.QUOTA_EXHAUSTED: "quota exhausted",
    FailureKind.RATE_LIMITED: "rate limited",
    FailureKind.REJECTED: "request rejected",
    FailureKind.SERVER_ERROR: "server error",
    FailureKind.TIMEOUT: "timed out",
    FailureKind.NO_ENDPOINT: "no such endpoint",
}
"""How doctor names each kind of failure (chatbots/failures.py)."""


def _model_fix(kind: FailureKind, settings: Config) -> str:
    if kind is FailureKind.KEY_REFUSED:
        return ("set OPENAI_API_KEY: the server asks for a key" if not settings.openai_api_key
                else "check OPENAI_API_KEY: the server refused it (a gateway wants one of its own keys, or its master key)")
    if kind in (FailureKind.QUOTA_EXHAUSTED, FailureKind.RATE_LIMITED):
        return "check the key's quota and billing with the provider behind OPENAI_BASE_URL, or try again later"
    return "check OPENAI_BASE_URL points at the server's OpenAI-compatible API (often ending in /v1) and its logs"


# -- moderation ------------------------------------------------------------------------------------------------

MODERATION_ELSEWHERE = ("set CHATBOTS_MODERATION_BASE_URL to a server with a /moderations endpoint (chat servers such "
                        "as Ollama, vLLM and llama.cpp have none), or CHATBOTS_MODERATION=off")


async def moderation(settings: Config, moderator: Moderator | None, timeout: float) -> Row:
    if moderator is None:
        return Row("moderation", SKIPPED, "CHATBOTS_MODERATION=off")
    shown = safe_url(moderator.url)
    if not moderator.api_key and moderator.url == DEFAULT_BASE_URL + "/moderations":
        raise CheckFailed("no key for OpenAI's moderation endpoint",
                          "set CHATBOTS_MODERATION_API_KEY (or OPENAI_API_KEY), or CHATBOTS_MODERATION_BASE_URL, "
                          "or CHATBOTS_MODERATION=off")
    consequence = ("every message would be refused" if moderator.block_on_error
                   else "messages would go unmoderated")
    try:
        status, body = await moderator.client.post_json(
            "moderations", {"model": moderator.model, "input": MODERATION_PROBE}, timeout)
    except TimeoutError:
        raise
    except (aiohttp.ClientError, OSError) as error:
        raise CheckFailed(f"cannot reach {shown} ({describe(error)}); {consequence}",
                          "check CHATBOTS_MODERATION_BASE_URL (else OPENAI_BASE_URL is used), or set CHATBOTS_MODERATION=off") from None
    if status != 200:
        failure = moderation_failure(status, body)
        said = f"{KIND_PHRASES.get(failure.kind, 'answered an error')} ({failure.details()})"
        if failure.kind is FailureKind.NO_ENDPOINT:
            raise CheckFailed(f"{shown}: no moderation endpoint ({status}); {consequence}", MODERATION_ELSEWHERE)
        if failure.kind is FailureKind.KEY_REFUSED:
            raise CheckFailed(f"{shown}: {said}; {consequence}",
                              "check CHATBOTS_MODERATION_API_KEY (else OPENAI_API_KEY is used), or set CHATBOTS_MODERATION=off")
        if status in (400, 422) or failure.kind is FailureKind.MODEL_UNKNOWN:
            raise CheckFailed(f"{shown}: {said}; {consequence}",
                              f"check CHATBOTS_MODERATION_MODEL ({moderator.model}) is a moderation model this server has")
        raise CheckFailed(f"{shown}: {said}; {consequence}",
                          "check the moderation server's health; a gateway without a moderation model answers this way: "
                          + MODERATION_ELSEWHERE)
    try:
        results = json.loads(body)["results"]
        if not isinstance(results, list) or not results:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"{shown} answered, but not with moderation results; {consequence}", MODERATION_ELSEWHERE) from None
    return Row("moderation", OK, f"{shown}: answers ({moderator.model}; on error: {settings.moderation_on_error})")
