"""A throw-away PostgreSQL database for tests, or one clear skip when no server is reachable.

CHATBOTS_TEST_DATABASE_URL names the server (default: the local one, trust auth). CI sets
CHATBOTS_REQUIRE_POSTGRES=1, which turns the skip into a failure.
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
TABLES = "workspaces, events, jobs"


def _admin() -> object | None:
    import psycopg

    try:
        return psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error:
        if os.environ.get("CHATBOTS_REQUIRE_POSTGRES"):
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
    """Remove every row (the schema stays), so each test starts from nothing."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('workspaces')").fetchone()
        if exists and exists[0]:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
