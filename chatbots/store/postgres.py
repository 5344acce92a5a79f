"""PostgreSQL through psycopg 3: a pool of connections, each used by one of the Store's worker threads.

Replicas share nothing but this database, so every exactly-once decision here is a unique key (events,
messages' platform ids), the schema is migrated by one replica while the others wait on an advisory lock, and
the Store trusts no cached row another process could change unless a version read in the same round trip
vouches for it (conversations.version, bumped in every statement that changes what a window shows). The same
statements as SQLite run here (chatbots.store.base); `?` placeholders become `%s` once per statement.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..clock import Clock, system_clock
from ..types import ConversationKey
from ..window import MAX_WINDOW_MESSAGES
from .base import WINDOW_SQL, Result, SQLDatabase, StoreError
from .pg_schema import MIGRATIONS

MIGRATION_LOCK = 0x43686174626F7473  # "Chatbots": the advisory lock one migrating replica holds
POOL_SIZE = 8
"""Connections for statements: one per Store worker thread, so a statement never waits for a connection."""
TURN_WAITERS = 4
"""Connections on which turns wait for a conversation another replica is answering (see TurnLocks)."""
TURN_WAIT_TIMEOUT = 3600.0
"""Seconds a turn may wait for one of those connections: waiting turns wait for answers, which take long."""
LIMITS_LOCK_SPACE = 0x4361_7073  # "Caps": with a workspace id, the lock admissions to its caps take in turn
WAIT_FOR_CONNECTION = 2.0
"""Seconds a statement waits for a pooled connection (the server may be restarting) before it fails."""


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


NUL_STAND_IN = "\ufffd"
"""PostgreSQL text cannot hold U+0000 (SQLite's can); people and models may send it, so it is stored as this."""


def storable(params: Sequence[Any]) -> list[Any]:
    """Parameters PostgreSQL accepts: NUL characters in text replaced by NUL_STAND_IN."""
    return [value.replace("\x00", NUL_STAND_IN) if type(value) is str and "\x00" in value else value for value in params]


class PostgresDatabase(SQLDatabase):
    BYTE_LENGTH = "octet_length({})"
    WORKSPACE_LOCK = f"SELECT pg_advisory_xact_lock({LIMITS_LOCK_SPACE}, CAST(? AS integer))"
    shared = True
    workers = POOL_SIZE
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, pool: ConnectionPool, url: str, clock: Clock = system_clock) -> None:
        super().__init__(clock)
        self.pool = pool
        self.url = url
        self._local = threading.local()  # the connection of a transaction open on this thread
        self.turn_locks = TurnLocks(url)

    @classmethod
    def open(
        cls, url: str, clock: Clock = system_clock, connect_timeout: float = 10.0, wait: float = WAIT_FOR_CONNECTION
    ) -> PostgresDatabase:
        """Connect, and create or migrate the schema (one replica migrates; the others wait, then find it done).

        wait: how long a statement waits for a connection while the server is away, before the turn gives up."""
        database = cls.connect(url, clock, connect_timeout, wait)
        try:
            database.migrated = database.migrate()
        except (psycopg.Error, PoolTimeout) as error:
            database.close()
            raise StoreError(f"cannot migrate the database at {safe_url(url)}: {_first_line(error)} "
                             "(check that DATABASE_URL's user may create tables)") from None
        return database

    @classmethod
    def connect(
        cls, url: str, clock: Clock = system_clock, connect_timeout: float = 10.0, wait: float = WAIT_FOR_CONNECTION
    ) -> PostgresDatabase:
        """A pool of connections, without touching the schema (`chatbots doctor` looks, and changes nothing).

        Connections are not checked when handed out (that is a round trip per statement): a connection the server
        dropped fails its next statement, the pool discards it when it comes back broken, and the turn that met
        it ends with the storage notice; the health check's pings flush the rest out after an outage."""
        pool = ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, open=False, timeout=wait,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout))}, name="chatbots",
        )
        try:
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))).close()  # a quick, precise refusal
            pool.open(wait=True, timeout=connect_timeout)
        except (psycopg.Error, PoolTimeout) as error:
            pool.close()
            raise StoreError(f"cannot use the database at {safe_url(url)}: {_first_line(error)} "
                             "(check DATABASE_URL, that the server is running and reachable, and the user's rights)") from None
        return cls(pool, url, clock)

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
        exists = self._run("SELECT to_regclass('chatbots_migrations') IS NOT NULL").one()
        done = [row[0] for row in self._run("SELECT name FROM chatbots_migrations ORDER BY name").rows] if exists and exists[0] else []
        return done, [name for name, _ in MIGRATIONS if name not in done]

    # -- window versions: every change to what a conversation's window shows bumps conversations.version in the
    # same statement (so no extra round trip, and no reader sees the change without the bump); a Store holding a
    # window with the version it reflects knows, from the version its own write returns, whether anyone else
    # changed that window since.

    def _changed_rows(
        self, dml: str, params: Sequence[Any], returning: str, also: Callable[[str], tuple[str, list[Any]] | None] | None = None,
        besides: Sequence[tuple[str, list[Any]]] = (),
    ) -> list[tuple[Any, ...]]:
        statement = also("EXISTS (SELECT 1 FROM changed)") if also is not None else None
        extras = [statement] if statement is not None else []
        extras += besides
        ctes = "".join(f"also{n} AS ({sql}), " for n, (sql, _) in enumerate(extras))
        return self._run(
            f"WITH changed AS ({dml} RETURNING {returning}, conversation_id AS changed_conversation), {ctes}"
            "bumped AS (UPDATE conversations SET version = version + 1 "
            "WHERE id IN (SELECT changed_conversation FROM changed) RETURNING id, version) "
            f"SELECT changed.{', changed.'.join(returning.split(', '))}, bumped.version FROM changed "
            "LEFT JOIN bumped ON bumped.id = changed.changed_conversation",
            [*params, *(value for _, values in extras for value in values)],
        ).rows

    def add_question_versioned(
        self, conversation_id: int, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int | None, int | None, int | None]:
        """One statement: the question, its conversation's version bump, and the answer's row when it was stored.

        The answer's INSERT reads the question's, so PostgreSQL runs the question's first: the answer's id is
        the larger, as history's order needs."""
        if not answer_model:
            return (*self.add_message_versioned(conversation_id, "user", text, tokens, **fields), None)
        if fields.get("files"):  # the files' rows need the question's id: its own transaction, then the answer's row
            return super().add_question_versioned(conversation_id, text, tokens, answer_model, **fields)
        fields.pop("files", None)
        insert, values = self._message_insert(conversation_id, "user", text, tokens, **fields)
        now = self._now()
        row = self._run(
            f"WITH changed AS ({insert} RETURNING id, conversation_id), "
            "answer AS (INSERT INTO messages (conversation_id, role, text, tokens, model, status, created_at, updated_at) "
            "SELECT conversation_id, 'assistant', '', 0, ?, 'streaming', ?, ? FROM changed RETURNING id), "
            "bumped AS (UPDATE conversations SET version = version + 1 "
            "WHERE id IN (SELECT conversation_id FROM changed) RETURNING version) "
            "SELECT changed.id, (SELECT version FROM bumped), (SELECT id FROM answer) FROM changed",
            [*values, answer_model, now, now],
        ).one()
        return (None, None, None) if row is None else (int(row[0]), row[1], int(row[2]))

    def add_first_question(
        self, key: ConversationKey, workspace_id: int, text: str, tokens: int, answer_model: str | None, **fields: Any
    ) -> tuple[int, bool, int | None, int | None, int | None]:
        """A question in a conversation this process holds no id for (most often a new thread), with the conversation
        found or created, its version bumped, and the answer's row begun, in one statement: (conversation id, created
        just now, message id or None for a redelivery, the conversation's version after it, answer row or None).

        A conversation created here starts at version 1 (its first message); an existing one is bumped whether or not
        the message was new, which at worst makes a replica read its window again."""
        if not answer_model or fields.get("files"):  # context, or files whose rows need the question's id first
            return super().add_first_question(key, workspace_id, text, tokens, answer_model, **fields)
        fields.pop("files", None)
        insert, values = self._message_insert(0, "user", text, tokens, **fields)
        columns = insert[insert.index("(") : insert.index(")") + 1]
        now = self._now()
        row = self._run(
            "WITH conv AS (INSERT INTO conversations (workspace_id, channel, thread, created_at, version) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (workspace_id, channel, thread) DO UPDATE SET version = conversations.version + 1 "
            "RETURNING id, version, (xmax = 0) AS created), "
            f"changed AS (INSERT INTO messages {columns} SELECT conv.id, {', '.join('?' * (len(values) - 1))} FROM conv "
            "ON CONFLICT DO NOTHING RETURNING id, conversation_id), "
            "answer AS (INSERT INTO messages (conversation_id, role, text, tokens, model, status, created_at, updated_at) "
            "SELECT conversation_id, 'assistant', '', 0, ?, 'streaming', ?, ? FROM changed RETURNING id) "
            "SELECT conv.id, conv.created, (SELECT id FROM changed), conv.version, (SELECT id FROM answer) FROM conv",
            [workspace_id, key.channel, key.thread, now, *values[1:], answer_model, now, now],
        ).one()
        assert row is not None
        return int(row[0]), bool(row[1]), None if row[2] is None else int(row[2]), int(row[3]), None if row[4] is None else int(row[4])

    def _changed_count(self, dml: str, params: Sequence[Any]) -> int:
        row = self._run(
            f"WITH changed AS ({dml} RETURNING conversation_id), "
            "bumped AS (UPDATE conversations SET version = version + 1 WHERE id IN (SELECT conversation_id FROM changed)) "
            "SELECT count(*) FROM changed",
            params,
        ).one()
        return int(row[0]) if row else 0

    def _window_rows(self, conversation_id: int, token_budget: int) -> tuple[list[tuple[Any, ...]], int | None]:
        """The window and its conversation's version in one statement, hence one snapshot: they agree."""
        rows = self._run(
            f"SELECT held.*, (SELECT version FROM conversations WHERE id = ?) FROM ({WINDOW_SQL}) AS held ORDER BY id",
            [conversation_id, conversation_id, MAX_WINDOW_MESSAGES + 1, token_budget],
        ).rows
        return [row[:9] for row in rows], (int(rows[0][9]) if rows and rows[0][9] is not None else None)

    def _write_exact(self, conversation_id: int, corrected: list[tuple[int, int]]) -> None:
        with self.transaction():
            super()._write_exact(conversation_id, corrected)
            self._run("UPDATE conversations SET version = version + 1 WHERE id = ?", [conversation_id])

    def close(self) -> None:
        self.pool.close()  # turn locks close asynchronously first (Store.close_turns)

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
            cursor = conn.execute(_pg(sql), storable(params) or None)  # type: ignore[arg-type]
            rows = cursor.fetchall() if cursor.description else []
            columns = tuple(column.name for column in cursor.description or ())
            return Result(rows, cursor.rowcount, columns)

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.statements += 1
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_pg(sql), [storable(row) for row in rows])  # type: ignore[arg-type]

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


log = logging.getLogger(__name__)


class TurnLocks:
    """Session advisory locks, one per conversation being answered, so replicas answer a conversation in turn.

    An uncontended turn takes its lock with pg_try_advisory_lock on one connection that holds the locks of every
    turn this process is answering: a thousand parallel conversations cost one connection, not a thousand. A
    turn whose conversation another replica is answering waits with pg_advisory_lock on a connection of its own
    from a small pool (TURN_WAITERS), and holds it until its turn ends; that takes two replicas in one
    conversation at the same moment, so few turns ever wait. Neither uses the statement pool, so a waiting or
    answering turn never starves the statements. The engine already orders turns within one process, so each
    process asks for a conversation's lock once at a time (session locks are re-entrant within a connection).
    A connection whose state is in doubt (an error, or a cancel mid-statement) is closed, which frees its locks:
    a lock is never left held by a turn that ended.

    Round trips: the uncontended lock carries a read the turn needs anyway (its settings) in the same statement,
    and is released without the turn waiting for the unlock (the next statement on that connection queues behind
    it; close() waits for releases in flight).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._shared: psycopg.AsyncConnection[Any] | None = None
        self._connecting = asyncio.Lock()
        self._waiters: AsyncConnectionPool | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self.statements = 0
        """Lock and unlock statements sent (the benchmark's round-trip count; unlocks are not waited for)."""

    async def _holder(self) -> psycopg.AsyncConnection[Any]:
        async with self._connecting:
            if self._shared is None or self._shared.closed:
                self._shared = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            return self._shared

    async def _pool(self) -> AsyncConnectionPool:
        async with self._connecting:
            if self._waiters is None:
                self._waiters = AsyncConnectionPool(
                    self.url, min_size=0, max_size=TURN_WAITERS, open=False, timeout=TURN_WAIT_TIMEOUT,
                    kwargs={"autocommit": True}, name="chatbots-turns",
                )
                await self._waiters.open()
            return self._waiters

    @asynccontextmanager
    async def held(self, key: int, read: tuple[str, Sequence[Any]] | None = None) -> AsyncIterator[Any]:
        """Hold the lock on key (a conversation's turn) for the body, across every process on this database.

        read: a one-value query (`?` placeholders) run in the same statement as an uncontended lock; the body gets
        its value, or None when the turn had to wait (the value would be stale by then)."""
        holder = await self._holder()
        sql, params = "SELECT pg_try_advisory_lock(%s)", [key]
        if read is not None:
            sql, params = f"{sql}, ({_pg(read[0])})", [key, *storable(read[1])]
        self.statements += 2  # the lock, and its unlock
        try:
            taken = await (await holder.execute(sql, params)).fetchone()  # type: ignore[arg-type]
        except BaseException:
            await holder.close()
            raise
        if taken and taken[0]:
            try:
                yield taken[1] if read is not None else None
            finally:
                task = asyncio.ensure_future(_release(holder, key))
                self._releasing.add(task)
                task.add_done_callback(self._releasing.discard)
            return
        pool = await self._pool()
        self.statements += 1
        async with pool.connection() as own:
            try:
                await own.execute("SELECT pg_advisory_lock(%s)", [key])
            except BaseException:
                await own.close()  # it may have the lock: closing frees it, and the pool drops the connection
                raise
            try:
                yield None
            finally:
                await _release(own, key)

    async def close(self) -> None:
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        if self._shared is not None:
            await self._shared.close()
        if self._waiters is not None:
            await self._waiters.close()


async def _release(conn: psycopg.AsyncConnection[Any], key: int) -> None:
    """Unlock; when that cannot be done, close the connection, which frees every lock it holds."""
    try:
        await conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    except BaseException as error:
        log.warning("a turn lock could not be released (%s); its connection is closed instead", type(error).__name__)
        await conn.close()
        if not isinstance(error, psycopg.Error):
            raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
