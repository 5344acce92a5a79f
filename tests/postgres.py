"""A throw-away PostgreSQL database for tests, or one clear skip when no server is reachable.

CHATBOTS_TEST_DATABASE_URL names the server (default: the local one, trust auth). CI sets
CHATBOTS_REQUIRE_POSTGRES=1, which turns the skip into a failure. CHATBOTS_TEST_BACKEND=postgres runs the whole
suite on that server (see tests/backend.py); it needs the server too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

SERVER_URL = os.environ.get("CHATBOTS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_REASON = (
    "PostgreSQL tests skipped: no server at CHATBOTS_TEST_DATABASE_URL "
    f"({SERVER_URL.split('@')[-1]}); start one or set that variable to run them"
)
BACKEND = os.environ.get("CHATBOTS_TEST_BACKEND", "sqlite")
if BACKEND not in ("sqlite", "postgres"):
    raise ValueError(f"CHATBOTS_TEST_BACKEND is {BACKEND!r}; use sqlite (the default) or postgres")
SUITE_ON_POSTGRES = BACKEND == "postgres"
"""The whole suite runs on PostgreSQL: every store the fixtures open is the session's database."""


def _admin() -> object | None:
    import psycopg

    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        if os.environ.get("CHATBOTS_REQUIRE_POSTGRES") or SUITE_ON_POSTGRES:
            raise
        return None


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the test server for this session, dropped at the end."""
    admin = _admin()
    if admin is None:
        pytest.skip(SKIP_REASON)
    name = f"chatbots_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    try:
        yield _with_database(SERVER_URL, name)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


def empty(url: str) -> None:
    """Remove every row and restart the ids (the schema stays), so each test starts from nothing.

    DELETE, not TRUNCATE: on tables this small it takes a few milliseconds where TRUNCATE takes tens."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        script = _emptying(url, conn)
        if script:
            conn.execute(script)


def _script(tables: tuple[str, ...], identities: tuple[tuple[str, str], ...]) -> str:
    restart = ", ".join(f"setval(pg_get_serial_sequence('{table}', '{column}'), 1, false)" for table, column in identities)
    return (
        "BEGIN; SET LOCAL lock_timeout = '10s'; "  # a test that left a transaction open fails, not hangs
        + " ".join(f"DELETE FROM {table};" for table in tables)
        + f" SELECT {restart}; COMMIT;"
    )


_scripts: dict[str, str] = {}


def _emptying(url: str, conn: object) -> str | None:
    """The statements emptying every table of the schema (found once it exists; migrations stay recorded)."""
    if url not in _scripts:
        tables = tuple(row[0] for row in conn.execute(  # type: ignore[attr-defined]
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'chatbots_migrations' ORDER BY 1").fetchall())
        if "workspaces" not in tables:
            return None  # not migrated yet: nothing to empty
        identities = tuple(conn.execute(  # type: ignore[attr-defined]
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1").fetchall())
        _scripts[url] = _script(tables, identities)
    return _scripts[url]
