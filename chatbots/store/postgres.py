"""PostgreSQL through psycopg 3: a pool of connections, each used by one of the Store's worker threads.

Replicas share nothing but this database, so every exactly-once decision here is a unique key (events,
messages' platform ids), the schema is migrated by one replica while the others wait on an advisory lock, and
the Store keeps no cache of rows another process could change. The same statements as SQLite run here
(chatbots.store.base); `?` placeholders become `%s` once per statement.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from ..clock import Clock, system_clock
from .base import Result, SQLDatabase, StoreError
from .pg_schema import MIGRATIONS

MIGRATION_LOCK = 0x43686174626F7473  # "Chatbots": the advisory lock one migrating replica holds
POOL_SIZE = 8


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in ("postgres", "postgresql")  # type: ignore[union-attr]


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """SQLite-style placeholders as psycopg's (no statement here has a literal ? or %)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase(SQLDatabase):
    BYTE_LENGTH = "octet_length({})"
    shared = True
    workers = POOL_SIZE
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, pool: ConnectionPool, url: str, clock: Clock = system_clock) -> None:
        super().__init__(clock)
        self.pool = pool
        self.url = url
        self._local = threading.local()  # the connection of a transaction open on this thread

    @classmethod
    def open(cls, url: str, clock: Clock = system_clock, connect_timeout: float = 10.0) -> PostgresDatabase:
        """Connect, and create or migrate the schema (one replica migrates; the others wait, then find it done)."""
        pool = ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=False, check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout))}, name="chatbots",
        )
        try:
            pool.open(wait=True, timeout=connect_timeout)
            database = cls(pool, url, clock)
            database.migrate()
        except (psycopg.Error, TimeoutError, psycopg.pool.PoolTimeout) as error:  # type: ignore[attr-defined]
            pool.close()
            raise StoreError(f"cannot use the database at {safe_url(url)}: {_first_line(error)} "
                             "(check DATABASE_URL, that the server is running and reachable, and the user's rights)") from None
        return database

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in one transaction under an advisory lock; returns their names."""
        applied_now: list[str] = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            conn.execute("CREATE TABLE IF NOT EXISTS chatbots_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT name FROM chatbots_migrations").fetchall()}
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements:
                    conn.execute(statement)  # type: ignore[arg-type]
                conn.execute("INSERT INTO chatbots_migrations (name, applied_at) VALUES (%s, %s)", [name, self._now()])
                applied_now.append(name)
        return applied_now

    def applied_migrations(self) -> tuple[list[str], list[str]]:
        """(applied, pending) migration names."""
        result = self._run("SELECT name FROM chatbots_migrations ORDER BY name")
        done = [row[0] for row in result.rows]
        return done, [name for name, _ in MIGRATIONS if name not in done]

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        held = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        with self.pool.connection() as conn:
            yield conn

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        self.statements += 1
        with self._connection() as conn:
            cursor = conn.execute(_pg(sql), list(params) or None)  # type: ignore[arg-type]
            rows = cursor.fetchall() if cursor.description else []
            columns = tuple(column.name for column in cursor.description or ())
            return Result(rows, cursor.rowcount, columns)

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.statements += 1
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_pg(sql), rows)  # type: ignore[arg-type]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        self.statements += 1
        with self.pool.connection() as conn, conn.transaction():
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
