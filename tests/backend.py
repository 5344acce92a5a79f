"""The database the suite runs on, reached the way the product reaches it, and read the same way on both backends.

By default every test's store is a SQLite file in its tmp_path. With CHATBOTS_TEST_BACKEND=postgres the settings
fixture names the session's throw-away PostgreSQL database in database_url (DATABASE_URL), emptied before each
test, and everything below opens that instead: the product's own choice between the two (open_database).
Tests about SQLite itself are marked sqlite_only and left out of that pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatbots.clock import Clock, system_clock
from chatbots.config import Config
from chatbots.store import Store, open_database
from tests.postgres import SUITE_ON_POSTGRES, empty

__all__ = ["SUITE_ON_POSTGRES", "database_env", "database_url", "dicts", "open_store", "rows", "value"]


def database_url(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL database this test's settings name (emptied now), or None on the SQLite pass."""
    if not SUITE_ON_POSTGRES:
        return None
    from chatbots.store.postgres import PostgresDatabase

    url: str = request.getfixturevalue("postgres_url")
    if url not in _migrated:  # as the first `chatbots run` would have: `chatbots doctor` only looks
        PostgresDatabase.open(url).close()
        _migrated.add(url)
    empty(url)
    return url


_migrated: set[str] = set()


def open_store(settings: Config, clock: Clock = system_clock) -> Store:
    """A Store on the database the settings name, as chatbots.app opens it."""
    return Store(open_database(settings.database_url, settings.db_path, clock))


def database_env(monkeypatch: pytest.MonkeyPatch, settings: Config) -> None:
    """The environment a command-line process reads to reach the same database as these settings."""
    monkeypatch.setenv("CHATBOTS_DB", settings.db_path)
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)


def rows(store: Store, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """What a statement returns, through the store's own runner (`?` placeholders on both backends)."""
    return [tuple(row) for row in store.sql._run(sql, params).rows]


def dicts(store: Store, sql: str, *params: Any) -> list[dict[str, Any]]:
    """Rows as dictionaries by column name."""
    return store.sql.query_dicts(sql, params)


def value(store: Store, sql: str, *params: Any) -> Any:
    """The first column of the first row (None when there is none)."""
    found = rows(store, sql, *params)
    return found[0][0] if found else None
