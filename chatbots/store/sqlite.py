"""SQLite through sqlite-utils: one connection, used by one worker thread, the file migrated on open."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from ..clock import Clock, system_clock
from ..migrations import migrations
from .base import Result, SQLDatabase, StoreError


def sqlite_error(path: str | Path, error: sqlite3.Error) -> StoreError:
    """One line for the operator: the file, what SQLite said, and what to do, by the kind of failure."""
    return StoreError(f"cannot use the database at {path}: {error} (check CHATBOTS_DB: {_fix(Path(path), error)})")


def _fix(path: Path, error: sqlite3.Error) -> str:
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "another process holds a write lock on it; run one bot per file, and stop the other writer or retry"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return "this user cannot write it; make the file and its folder writable, or point CHATBOTS_DB elsewhere"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return "it is damaged or not a SQLite database; restore it from a backup, or point CHATBOTS_DB at a new file"
    if code == sqlite3.SQLITE_FULL:
        return "the disk is full; free some space"
    folder = path.absolute().parent
    if code == sqlite3.SQLITE_CANTOPEN and not folder.is_dir():
        return f"the folder {folder} does not exist; create it, or point CHATBOTS_DB elsewhere"
    if code == sqlite3.SQLITE_CANTOPEN and path.is_dir():
        return f"it is a folder; set CHATBOTS_DB to a file path such as {path / 'chatbots.db'}"
    return "the file, its folder and their permissions for this user"


def migrate(db: Database) -> list[str]:
    """Apply the pending migrations holding the file's write lock; returns the names applied here.

    Under the lock, so processes opening a file at once (`chatbots migrate` beside `chatbots run`) take turns: the
    one that waited finds the migrations applied instead of applying them again. An up-to-date file is only read."""
    if not migrations.pending(db):
        return []
    db.execute("BEGIN IMMEDIATE")  # waits up to the busy timeout for another writer
    try:
        names = [migration.name for migration in migrations.pending(db)]
        migrations.apply(db)  # each migration in a savepoint of this transaction
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()
    return names


class SQLiteDatabase(SQLDatabase):
    """One process answers from a file; operator commands may read and write beside it."""

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        super().__init__(clock)
        self.db = db
        self._lock = threading.RLock()  # one connection: a transaction must not interleave with other statements

    @classmethod
    def open(cls, path: str | Path, clock: Clock = system_clock, busy_timeout: float = 5.0) -> SQLiteDatabase:
        """Open (creating and migrating as needed) the database at path; ':memory:' works for tests."""
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout)
            db = Database(conn, execute_plugins=False)
            if str(path) != ":memory:":
                db.enable_wal()
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, which is what WAL needs
            db.execute("PRAGMA foreign_keys=ON")
            migrated = migrate(db)
        except sqlite3.Error as error:
            raise sqlite_error(path, error) from None
        database = cls(db, clock)
        database.migrated = migrated
        return database

    def applied_migrations(self) -> tuple[list[str], list[str]]:
        with self._lock:
            return ([m.name for m in migrations.applied(self.db)], [m.name for m in migrations.pending(self.db)])

    def close(self) -> None:
        self.db.close()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        self.statements += 1
        with self._lock:
            cursor = self.db.execute(sql, list(params))
            rows = cursor.fetchall() if cursor.description else []
            columns = tuple(column[0] for column in cursor.description or ())
            if self.db.conn.in_transaction and not self._in_transaction:
                self.db.conn.commit()  # RETURNING statements stay open until fetched: commit them now
            return Result(rows, cursor.rowcount, columns)

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.statements += 1
        with self._lock:
            self.db.conn.executemany(sql, rows)
            if not self._in_transaction:
                self.db.conn.commit()

    _in_transaction = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.statements += 1
        with self._lock, self.db.atomic():
            self._in_transaction = True
            try:
                yield
            finally:
                self._in_transaction = False
