"""Engine overhead per reply: everything but the model's own time, on SQLite and on PostgreSQL.

A 1,000-message conversation in a database of 1,000,000 messages; the model answers instantly in 50
chunks from inside the process, so each measured turn is pure engine work: store the question, load
and trim the window, build the prompt, stream, store the answer. Each row also reports the statements
the store sent per turn (SQLDatabase.statements) and, on PostgreSQL, the pool check-outs per turn (a
hand-out costs no round trip: connections are not checked) and the turn-lock statements per turn (the
lock, which also reads the turn's settings, and its unlock, which the turn does not wait for);
round_trips_per_turn adds statements and turn-lock statements.

    python -m bench.engine [--turns 300] [--http] [--database-url URL | --postgres] [--experiments]

--http also runs the same turns through the fake OpenAI server over loopback HTTP (SDK included).
--database-url names a PostgreSQL server (its database is only used to connect): the benchmark creates a
throw-away database there, fills it with COPY, ANALYZEs it, measures, and drops it; SQLite is measured in
the same run for comparison. --postgres picks the local server: its Unix socket when there is one, else
127.0.0.1:5432 (user postgres, trust auth). --experiments measures what some changes would save, on the
same PostgreSQL database (see EXPERIMENTS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import Message, OpenAIChat
from chatbots.store import SQLiteDatabase, Store
from chatbots.types import ConversationKey, Inbound, Usage
from tests.fakes.model_server import FakeModelServer

KEY = ConversationKey("bench", "T1", "C1", "hot-thread")
ANSWER = "This is a fairly ordinary answer of a few dozen tokens, streamed in fifty small pieces. " * 2


class InstantModel:
    """Answers at once in 50 chunks, with usage, like a very fast server."""

    async def stream(self, model: str, messages: list[Message], max_output: int | None = None) -> AsyncIterator[str | Usage]:
        size = -(-len(ANSWER) // 50)
        for start in range(0, len(ANSWER), size):
            yield ANSWER[start : start + size]
        yield Usage(len(messages) * 20, 50)


class NullReply:
    async def start(self) -> None: ...
    async def append(self, text: str) -> None: ...
    async def finish(self) -> list[str]:
        return ["r"]
    async def fail(self, notice: str) -> list[str]:
        return []


TEXT = "a typical chat message of a dozen words or so, asking about something at work"
NOW = "2026-11-01T00:00:00.000000Z"
OTHERS = 10_000
LOCAL_SOCKET = "/var/run/postgresql"
INSERT_MESSAGE = ("INSERT INTO messages (conversation_id, role, text, tokens, author_id, author_name, created_at) "
                  "VALUES (?,?,?,?,?,?,?)")


def message_rows(hot_id: int, others: list[int], total: int, hot: int) -> Iterator[tuple[Any, ...]]:
    """`total - hot` messages spread over the other conversations, then `hot` in the measured thread (newest)."""
    for n in range(total - hot):
        yield (others[n % len(others)], "user" if n % 2 == 0 else "assistant", TEXT, 20, "U1", "Ada", NOW)
    for n in range(hot):
        yield (hot_id, "user" if n % 2 == 0 else "assistant", TEXT, 20, "U1", "Ada", NOW)


def build_database(path: Path, total: int, hot: int) -> None:
    """Fill the SQLite database with `total` messages: `hot` in the measured thread, the rest in 10,000 others."""
    store = SQLiteDatabase.open(path)
    hot_id = store.conversation_id(KEY)
    others = [store.conversation_id(ConversationKey("bench", f"T{n % 50}", f"C{n}", "t")) for n in range(OTHERS)]
    conn = store.db.conn
    batch = []
    for row in message_rows(hot_id, others, total, hot):
        batch.append(row)
        if len(batch) == 50_000:
            conn.executemany(INSERT_MESSAGE, batch)
            batch.clear()
    conn.executemany(INSERT_MESSAGE, batch)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a settled database, not one mid-way through checkpointing 1M rows
    store.close()


def build_postgres(url: str, total: int, hot: int) -> None:
    """The same rows as build_database, into PostgreSQL with COPY; then VACUUM ANALYZE, so the planner has statistics
    and the visibility map is set, as on a database that has been running a while."""
    import psycopg

    from chatbots.store.postgres import PostgresDatabase

    database = PostgresDatabase.open(url)
    try:
        hot_id = database.conversation_id(KEY)
        workspaces = [database.workspace_id("bench", f"T{n}") for n in range(50)]
        with database.pool.connection() as conn:
            with conn.cursor() as cursor:
                with cursor.copy("COPY conversations (workspace_id, channel, thread, created_at) FROM STDIN") as copy:
                    for n in range(OTHERS):
                        copy.write_row((workspaces[n % 50], f"C{n}", "t", NOW))
                others = [row[0] for row in cursor.execute("SELECT id FROM conversations WHERE id <> %s ORDER BY id", [hot_id])]
                with cursor.copy("COPY messages (conversation_id, role, text, tokens, author_id, author_name, created_at) "
                                 "FROM STDIN") as copy:
                    for row in message_rows(hot_id, others, total, hot):
                        copy.write_row(row)
            conn.execute("VACUUM ANALYZE")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")  # a settled database, not one writing out the load in the background
    finally:
        database.close()


def local_postgres_url() -> tuple[str, str]:
    """The local server's URL and how it is reached: the Unix socket when present, else TCP on 127.0.0.1."""
    if os.path.exists(os.path.join(LOCAL_SOCKET, ".s.PGSQL.5432")):
        return f"postgresql://postgres@/postgres?host={LOCAL_SOCKET}", f"unix socket {LOCAL_SOCKET}"
    return "postgresql://postgres@127.0.0.1:5432/postgres", "tcp 127.0.0.1:5432"


def transport(url: str) -> str:
    parts = urlsplit(url)
    host = (parse_qs(parts.query).get("host") or [parts.hostname or ""])[0]
    return f"unix socket {host}" if host.startswith("/") or not host else f"tcp {host}:{parts.port or 5432}"


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new database on the server for this run, dropped afterwards (even when the run fails)."""
    import psycopg

    name = f"chatbots_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(engine: Engine, turns: int, start: int, new_threads: bool = False) -> list[float]:
    """Turns in the 1,000-message conversation, or (new_threads) each the first message of a thread of its own."""
    timings = []
    for n in range(turns):
        key = ConversationKey(KEY.platform, KEY.workspace, KEY.channel, f"new-{start + n}") if new_threads else KEY
        message = Inbound(key, f"bench-{start + n}", "U1", "Ada", f"question {n}: what about the quarterly numbers?")
        began = time.perf_counter()
        result = await engine.handle(message, NullReply())
        timings.append((time.perf_counter() - began) * 1000)
        assert result.status == "answered", result
    return timings


def summary(name: str, timings: list[float]) -> dict[str, Any]:
    ordered = sorted(timings)
    return {
        "name": name,
        "turns": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
        "max_ms": round(ordered[-1], 3),
    }


def _checkouts(engine: Engine) -> int:
    pool = getattr(engine.store.sql, "pool", None)
    return int(pool.get_stats().get("requests_num", 0)) if pool is not None else 0


async def counted(engine: Engine, name: str, turns: int, start: int, new_threads: bool = False, **extra: Any) -> dict[str, Any]:
    """Measure turns; the row carries statements (and pool check-outs, turn-lock statements) per turn besides the timings."""
    locks = engine.store.sql.turn_locks
    statements, checkouts = engine.store.sql.statements, _checkouts(engine)
    locked = locks.statements if locks is not None else 0
    row = summary(name, await measure(engine, turns, start, new_threads))
    row["statements_per_turn"] = round((engine.store.sql.statements - statements) / turns, 2)
    if getattr(engine.store.sql, "pool", None) is not None:
        row["pool_checkouts_per_turn"] = round((_checkouts(engine) - checkouts) / turns, 2)
        row["turn_lock_statements_per_turn"] = round((locks.statements - locked) / turns, 2)
        row["round_trips_per_turn"] = round(row["statements_per_turn"] + row["turn_lock_statements_per_turn"], 2)
    return {**row, **extra}


async def measure_engine(engine: Engine, label: str, turns: int, http: bool, settings: Config, offset: int = 0,
                         **extra: Any) -> list[dict[str, Any]]:
    """Warm up, measure with the instant model, and (with http) through the fake HTTP model.

    offset keeps message ids unique when several passes share one database (a repeated id is a duplicate)."""
    await measure(engine, 20, offset)  # warm the tokenizer, caches and the pool's connections
    results = [await counted(engine, f"engine overhead (in-process instant model), {label}", turns, offset + 100, **extra)]
    results.append(await counted(engine, f"first message of a new thread (in-process instant model), {label}", turns,
                                 offset + 5_000, new_threads=True, **extra))
    if http:
        async with FakeModelServer(default_chunks=50) as server:
            engine.model = OpenAIChat.from_settings(replace(settings, openai_base_url=server.base_url))
            await measure(engine, 20, offset + 10_000)
            results.append(await counted(engine, f"turn via fake HTTP model (SDK + loopback), {label}", turns, offset + 20_000, **extra))
    return results


async def run_sqlite(turns: int, messages: int, http: bool, log=print) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        began = time.perf_counter()
        build_database(path, messages, 1000)
        log(f"sqlite: built {messages:,} messages in {time.perf_counter() - began:.1f}s")
        settings = Config(openai_api_key="x", db_path=str(path), moderation=False)
        engine = Engine(Store.open(path), InstantModel(), settings)
        try:
            return await measure_engine(engine, "sqlite", turns, http, settings)
        finally:
            await engine.close()


EXPERIMENTS = ("synchronous_commit off", "cached windows and settings")
"""What each would save, measured on the same database after the default: commits not waiting for the WAL flush
(a session setting an operator can put in DATABASE_URL: ?options=-c%20synchronous_commit%3Doff); windows and
settings trusted from memory as on SQLite (unsafe with replicas: the floor the versioned window cache and the
settings read with the turn's lock approach)."""


def _with_option(url: str, option: str) -> str:
    parts = urlsplit(url)
    extra = "options=" + option.replace(" ", "%20").replace("=", "%3D")
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


async def run_postgres(server_url: str, turns: int, messages: int, http: bool, experiments: bool = False,
                       log=print) -> list[dict[str, Any]]:
    from chatbots.store.postgres import PostgresDatabase

    via = transport(server_url)
    with throwaway_database(server_url) as url:
        began = time.perf_counter()
        build_postgres(url, messages, 1000)
        log(f"postgresql ({via}): built {messages:,} messages in {time.perf_counter() - began:.1f}s")
        results = []
        for n, variant in enumerate(("default", *EXPERIMENTS) if experiments else ("default",)):
            variant_url = _with_option(url, "-c synchronous_commit=off") if variant == "synchronous_commit off" else url
            settings = Config(openai_api_key="x", database_url=variant_url, moderation=False)
            engine = Engine(Store(PostgresDatabase.open(variant_url)), InstantModel(), settings)
            if variant == "cached windows and settings":
                engine.store.shared = False
            label = f"postgresql via {via}" + ("" if variant == "default" else f", experiment: {variant}")
            try:
                results += await measure_engine(engine, label, turns, http, settings, 1_000_000 * n, transport=via)
            finally:
                await engine.close()
    return results


async def run(turns: int = 300, messages: int = 1_000_000, http: bool = False, log=print, database_url: str | None = None,
              experiments: bool = False) -> list[dict[str, Any]]:
    """Build each database, warm up, measure; one summary per backend and mode, SQLite's first. Moderation is off:
    only the engine is timed."""
    results = await run_sqlite(turns, messages, http, log)
    if database_url:
        results += await run_postgres(database_url, turns, messages, http, experiments, log)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--database-url", help="a PostgreSQL server to measure too (a throw-away database is made on it)")
    parser.add_argument("--postgres", action="store_true", help="measure the local PostgreSQL too (Unix socket if present)")
    parser.add_argument("--experiments", action="store_true", help="also measure PostgreSQL variants: " + "; ".join(EXPERIMENTS))
    args = parser.parse_args()
    url = args.database_url
    if args.postgres and not url:
        url, via = local_postgres_url()
        print(f"local PostgreSQL over {via}")
    for row in await run(args.turns, args.messages, args.http, database_url=url, experiments=args.experiments):
        print(json.dumps(row))


if __name__ == "__main__":
    asyncio.run(main())
