"""`chatbots migrate-db`: copy the SQLite database into PostgreSQL, a batch at a time, safe to run again.

Rows keep their ids, so references between tables stay true; a row already in the target is updated to the
source's values (the source is the truth), so a second run after the bot wrote more to SQLite brings over new
and changed rows and copies nothing twice. Tables are read inside one SQLite read transaction, so a bot still
writing the file cannot leave a message without its conversation in the copy. A target the bot itself has
written to is refused: ids there would collide with the source's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import psycopg

from .clock import iso, system_clock
from .config import ConfigError
from .store.base import StoreError
from .store.postgres import PostgresDatabase, is_postgres_url, safe_url, storable
from .store.sqlite import SQLiteDatabase

BATCH = 5_000
"""Rows read from SQLite and written to PostgreSQL at a time: memory stays flat whatever the database's size."""
FIRST = ("workspaces", "conversations", "messages")
"""Copied before the rest, which refer to them; foreign keys decide the order of everything else."""
NOT_COPIED = ("_sqlite_migrations", "reservations", "requests", "slack_oauth_states")
"""Each backend keeps its own migration history; reservations and request times are the in-flight state of
running bots (replicas keep them in the database), meaningless once the bot that wrote them stopped; so are
Slack install states, which expire within minutes."""
MARKER = "migrate-db"
"""The jobs row that marks a database this command copied into (and when it last did)."""
CONNECT_TIMEOUT = 10


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    source: int
    """Rows in the SQLite table."""
    target: int
    """Rows in the PostgreSQL table after the copy."""
    written: int
    """Rows this run inserted or changed."""


class Progress:
    """A bar per table on a terminal; one line per table otherwise, so logs and CI output are not flooded."""

    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def update(self, table: str, done: int, total: int) -> None:
        if not self.live:
            return
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r{table:<16} [{bar}] {done:>12,}/{total:,}")
        self.out.flush()

    def finish(self, table: str, total: int) -> None:
        if self.live:
            self.update(table, total, total)
            self.out.write("\n")
        else:
            self.out.write(f"{table}: {total:,} rows read\n")
        self.out.flush()


def migrate_db(db_path: str, url: str, out: TextIO, err: TextIO, batch: int = BATCH) -> int:
    """Copy CHATBOTS_DB into the PostgreSQL database at url; print the counts; 1 when a target is short."""
    _check_url(url)
    if not Path(db_path).is_file():
        raise ConfigError(f"no SQLite database at {db_path} to copy (set CHATBOTS_DB to the file the bot used)")
    _reach(url)
    source = SQLiteDatabase.open(db_path)  # brings an older file's columns up to date first
    try:
        target = PostgresDatabase.open(url, connect_timeout=CONNECT_TIMEOUT)  # creates or migrates the schema
        try:
            copied = copy_all(source.db.conn, target, Progress(err), batch)
        except psycopg.Error as error:
            raise StoreError(f"copying into {safe_url(url)} failed: {_first_line(error)}") from None
        finally:
            target.close()
    finally:
        source.close()
    return _report(copied, url, out, err)


def copy_all(source: sqlite3.Connection, target: PostgresDatabase, progress: Progress, batch: int = BATCH) -> list[Copied]:
    """Every table of source into target, parents first, then each identity sequence moved past the copied ids."""
    source.execute("BEGIN")  # one snapshot for every table, even while a bot writes the file
    try:
        tables = table_order(source)
        with target.pool.connection() as conn:
            target_columns = _target_columns(conn)
            _claim(conn, tables)
            copied = [_copy_table(source, conn, table, target_columns, progress, batch) for table in tables]
            _reset_sequences(conn)
    finally:
        source.rollback()
    return copied


def table_order(source: sqlite3.Connection) -> list[str]:
    """Tables to copy, each after the tables its foreign keys point at (FIRST first, then by name)."""
    names = [row[0] for row in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        if row[0] not in NOT_COPIED]
    parents = {name: {row[2] for row in source.execute(f'PRAGMA foreign_key_list("{name}")')} - {name} for name in names}
    rank = {name: (FIRST.index(name) if name in FIRST else len(FIRST), name) for name in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [name for name in names if name not in ordered and parents[name] <= set(ordered)]
        if not ready:
            raise StoreError(f"the tables {sorted(set(names) - set(ordered))} refer to each other in a cycle")
        ordered.append(min(ready, key=rank.__getitem__))
    return ordered


def _target_columns(conn: psycopg.Connection[Any]) -> dict[str, set[str]]:
    columns: dict[str, set[str]] = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
    ):
        columns.setdefault(table, set()).add(column)
    return columns


def _claim(conn: psycopg.Connection[Any], tables: Sequence[str]) -> None:
    """Refuse a target the bot already wrote to; mark it as this command's so later runs may add to it."""
    marked = conn.execute("SELECT 1 FROM jobs WHERE name = %s", [MARKER]).fetchone()
    if not marked:
        for table in tables:
            if conn.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")').fetchone() == (True,):
                raise StoreError(f"the target already holds rows (in {table}) that migrate-db did not copy: "
                                 "copy into a new, empty database, before any bot uses it")
    conn.execute("INSERT INTO jobs (name, last_run) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET last_run = "
                 "EXCLUDED.last_run", [MARKER, iso(system_clock())])


def _copy_table(
    source: sqlite3.Connection, conn: psycopg.Connection[Any], table: str, target_columns: dict[str, set[str]],
    progress: Progress, batch: int,
) -> Copied:
    info = list(source.execute(f'PRAGMA table_info("{table}")'))  # (cid, name, type, notnull, default, pk)
    columns = [row[1] for row in info]
    if table not in target_columns:
        raise StoreError(f"the target has no table {table}; is it migrated by a newer chatbots than this one?")
    missing = [column for column in columns if column not in target_columns[table]]
    if missing:
        raise StoreError(f"the target's {table} table has no column {', '.join(missing)}")
    key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
    insert = _upsert(table, columns, key)
    total = _count(source, table)
    read = written = 0
    progress.update(table, 0, total)
    cursor = source.execute(f'SELECT {", ".join(_quoted(columns))} FROM "{table}" ORDER BY rowid')
    while rows := cursor.fetchmany(batch):
        with conn.transaction(), conn.cursor() as pg:
            pg.executemany(insert, [storable(row) for row in rows])
            written += max(pg.rowcount, 0)
        read += len(rows)
        progress.update(table, read, total)
    progress.finish(table, read)
    found = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    return Copied(table, total, int(found[0]) if found else 0, written)


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """Insert, or bring the row with the same key up to the source's values; a row already equal is left alone."""
    names = _quoted(columns)
    sql = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({", ".join(["%s"] * len(columns))})'
    rest = [column for column in _quoted(columns) if column not in _quoted(key)]
    if not key or not rest:
        return sql + " ON CONFLICT DO NOTHING"
    mine = ", ".join(f'"{table}".{column}' for column in rest)
    theirs = ", ".join(f"EXCLUDED.{column}" for column in rest)
    return (sql + f' ON CONFLICT ({", ".join(_quoted(key))}) DO UPDATE SET ({", ".join(rest)}) = ROW({theirs})'
            f" WHERE ROW({mine}) IS DISTINCT FROM ROW({theirs})")


def _reset_sequences(conn: psycopg.Connection[Any]) -> None:
    """Each identity column's next value past the largest id, so rows the bot adds later get fresh ids."""
    identities = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in identities:
        conn.execute(
            f'SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)',
            [f'"{table}"', column],
        )


def _report(copied: Sequence[Copied], url: str, out: TextIO, err: TextIO) -> int:
    """The counts per table; a non-zero exit, with one line per table, when the target has fewer rows."""
    out.write(f"{'table':<16} {'in SQLite':>12} {'in PostgreSQL':>14} {'written now':>12}\n")
    for row in copied:
        out.write(f"{row.table:<16} {row.source:>12,} {row.target:>14,} {row.written:>12,}\n")
    short = [row for row in copied if row.target < row.source]
    for row in short:
        err.write(f"chatbots: {row.table}: {row.source:,} rows in SQLite but only {row.target:,} in {safe_url(url)}\n")
    if short:
        return 1
    written = sum(row.written for row in copied)
    out.write(f"copied {len(copied)} tables into {safe_url(url)}: every SQLite row is there "
              f"({written:,} rows written by this run)\n")
    return 0


def _check_url(url: str) -> None:
    if not is_postgres_url(url):
        raise ConfigError("--to must be a postgresql:// or postgres:// URL")
    try:
        urlsplit(url).port
    except ValueError:
        raise ConfigError("--to has a port that is not a number") from None


def _reach(url: str) -> None:
    """One clear line, without the password, when the target cannot be reached or refuses the login."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT).close()
    except psycopg.Error as error:
        raise StoreError(f"cannot reach --to {safe_url(url)}: {_first_line(error)} "
                         "(check the URL, that the server is running and reachable, and the user's rights)") from None


def _count(source: sqlite3.Connection, table: str) -> int:
    found = source.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    return int(found[0]) if found else 0


def _quoted(names: Sequence[str]) -> list[str]:
    return [f'"{name}"' for name in names]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
