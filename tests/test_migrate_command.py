"""`chatbots migrate`: the release step that brings the schema up to date once, safe beside replicas starting."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import psycopg
import pytest
from sqlite_utils import Database

from chatbots.cli import main
from chatbots.migrations import migrations
from chatbots.store.pg_schema import MIGRATIONS
from chatbots.store.postgres import MIGRATION_LOCK
from chatbots.store.sqlite import SQLiteDatabase, migrate
from tests.postgres import SERVER_URL, _with_database

ALL = [migration.name for migration in migrations._migrations]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_migrate_creates_the_sqlite_schema_then_finds_it_up_to_date(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATBOTS_DB", str(clean_env / "bot.db"))
    assert main(["migrate"]) == 0
    first = capsys.readouterr().out.strip()
    assert first == f"{clean_env / 'bot.db'}: applied {', '.join(ALL)} ({len(ALL)} migrations in all)"
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == f"{clean_env / 'bot.db'}: up to date ({len(ALL)} migrations applied)"
    database = SQLiteDatabase.open(clean_env / "bot.db")
    assert database.applied_migrations() == (ALL, []) and database.migrated == []
    database.close()


def test_migrate_needs_no_model_or_platform_settings(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A release step runs with the app's configuration, but needs only the database's."""
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.startswith("chatbots.db: applied m001_initial")
    assert (clean_env / "chatbots.db").exists()


def test_a_sqlite_migration_another_process_applied_while_this_one_waited_is_not_applied_again(tmp_path: Path) -> None:
    """Two processes opening a new file at once: the second waits for the first's write lock, then finds the
    schema there. The other process is played by a second connection that migrates the moment this one starts
    its transaction, before this one holds the lock."""
    path = tmp_path / "bot.db"
    other = Database(sqlite3.connect(str(path), check_same_thread=False))
    other.enable_wal()
    conn = sqlite3.connect(str(path), timeout=5)
    raced: list[str] = []

    def on_statement(sql: str) -> None:
        if sql.lstrip().upper().startswith("BEGIN") and not raced:
            raced.append(sql)
            assert migrate(other) == ALL

    conn.set_trace_callback(on_statement)
    assert migrate(Database(conn)) == [], "everything was applied by the other process meanwhile"
    assert raced, "the other process migrated while this one was opening the file"
    assert [m.name for m in migrations.applied(Database(conn))] == ALL
    conn.close()
    other.close()


def test_every_migration_only_adds_so_the_previous_release_runs_on_the_new_schema() -> None:
    """Replicas of the previous release keep running while the new ones start: a migration may create tables and
    indexes and add columns (with a default, or nullable), never drop, rename or rewrite. Removing something takes
    two releases: stop using it, then drop it."""
    import inspect
    import re

    adds = re.compile(r"\s*(CREATE (UNIQUE )?(TABLE|INDEX)|ALTER TABLE \w+ ADD COLUMN \w+ \w+( NOT NULL DEFAULT \S+)?\s*$)",
                      re.IGNORECASE)
    for name, statements in MIGRATIONS:
        for statement in statements:
            assert adds.match(str(statement)), f"{name}: {statement}"
    for migration in migrations._migrations:
        source = inspect.getsource(migration.fn)
        assert not re.search(r"\b(DROP|RENAME)\b|\.transform\(|\.drop\(", source, re.IGNORECASE), migration.name
        for statement in re.findall(r"ALTER TABLE[^\"]*", source, re.IGNORECASE):
            assert adds.match(statement), f"{migration.name}: {statement}"


async def _migrate_process(env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", "migrate", env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """An empty database of its own (the session's shared one already has the schema)."""
    name = f"{postgres_url.rsplit('/', 1)[1]}_migrate"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(SERVER_URL, name)  # type: ignore[misc]
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_several_migrate_commands_at_once_on_postgresql_apply_each_migration_once(fresh_postgres: str) -> None:
    """Replicas and release steps may start together: all wait on one lock, one migrates, the others find it done."""
    holder = psycopg.connect(fresh_postgres, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    env = {"DATABASE_URL": fresh_postgres.replace("postgresql://", "postgres://", 1)}  # as Heroku writes it
    runs = [asyncio.create_task(_migrate_process(env)) for _ in range(3)]
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = " \
              "(SELECT oid FROM pg_database WHERE datname = current_database())"
    async with asyncio.timeout(30):
        while holder.execute(waiting).fetchone() != (3,):  # type: ignore[union-attr]
            await asyncio.sleep(0.05)  # polling the server's lock table: there is no event to wait on
    holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
    holder.close()
    results = await asyncio.gather(*runs)
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    names = [name for name, _ in MIGRATIONS]
    outputs = sorted(out.split(": ", 1)[1].strip() for _, out, _ in results)
    assert outputs == [f"applied {', '.join(names)} ({len(names)} migrations in all)",
                       *[f"up to date ({len(names)} migrations applied)"] * 2]
    with psycopg.connect(fresh_postgres) as conn:
        assert [name for (name,) in conn.execute("SELECT name FROM chatbots_migrations ORDER BY name")] == names


async def test_migrate_against_an_unreachable_postgresql_is_one_line_and_fails_the_release(clean_env: Path) -> None:
    from tests.processes import free_port

    code, out, err = await _migrate_process({"DATABASE_URL": f"postgres://bot:hunter2@127.0.0.1:{free_port()}/db"})
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("chatbots: cannot use the database at postgres://bot@127.0.0.1:") and "hunter2" not in err
