"""`chatbots migrate-db`: a SQLite database written through the real store, copied into a real PostgreSQL."""

from __future__ import annotations

import io
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chatbots.cli import main
from chatbots.installations import InstalledApp
from chatbots.migrate_db import NOT_COPIED, Progress, copy_all, migrate_db, table_order
from chatbots.store import Store
from chatbots.store.postgres import PostgresDatabase
from chatbots.store.sqlite import SQLiteDatabase
from chatbots.types import ConversationKey
from chatbots.window import StoredFile
from tests.postgres import empty

KEYS = [
    ConversationKey("slack", "T1", "C1", "1.0"),
    ConversationKey("slack", "T1", "C2", "2.0"),
    ConversationKey("slack", "T2", "C1", "1.0"),
    ConversationKey("discord", "G1", "D1", "9"),
]
DAY = "2026-06-01"
BUDGET = 4000


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """CHATBOTS_DB in tmp_path, and no other configuration (no .env, no DATABASE_URL)."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    path = tmp_path / "bot.db"
    monkeypatch.setenv("CHATBOTS_DB", str(path))
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def target(postgres_url: str) -> str:
    empty(postgres_url)
    return postgres_url


async def fill(store: Store) -> None:
    """Something in every table, written the way the bot writes it."""
    for n, key in enumerate(KEYS):
        conversation = await store.conversation_id(key)
        workspace = await store.workspace_id(key.platform, key.workspace)
        for turn in range(3):
            files = [StoredFile("text", f"notes{n}.txt", "text/plain", f"[File: notes{n}.txt]\nline {turn}", 9),
                     StoredFile("image", "shot.png", "image/png", "data:image/png;base64,iVBORw0KGgo=", 765)] if turn == 1 else []
            await store.add_message(conversation, "user", f"question {n}.{turn}", 5 + sum(f.tokens for f in files),
                                    platform_id=f"u{n}.{turn}", author_id=f"U{n}", author_name=f"Person {n}",
                                    exact=turn % 2 == 0, files=files)
            answer = await store.begin_answer(conversation, "gpt-4o-mini")
            await store.complete_answer(answer, f"answer {n}.{turn}", 4, status="ok", platform_id=f"a{n}.{turn}",
                                        usage=(10, 4))
            await store.record_reply_parts(workspace, answer, [f"a{n}.{turn}", f"a{n}.{turn}b"])
            await store.record_usage(workspace, f"U{n}", DAY, "gpt-4o-mini", 10, 4)
        await store.record_feedback(workspace, f"a{n}.0", f"U{n}", -1)
        await store.record_feedback(workspace, f"a{n}.1", f"U{n}", 1)
        await store.record_moderation(key, "in", "passed", [], None)
        await store.record_moderation(key, "out", "flagged", ["harassment", "hate"], "kept text")
        await store.set_setting_audited(workspace, "instructions", f"Be brief, {n}.", actor_id=f"A{n}")
        await store.set_setting_audited(workspace, "model", "gpt-4o", actor_id=f"A{n}", channel=key.channel)
        assert await store.first_delivery(key.platform, f"Ev{n}")
        assert await store.claim_notice(workspace, f"alert:month:2026-06:{n}")
    interrupted = await store.begin_answer(await store.conversation_id(KEYS[0]), "gpt-4o-mini")
    await store.save_partial(interrupted, "half an ans")
    assert await store.recover_interrupted() == 1
    await store.begin_answer(await store.conversation_id(KEYS[1]), "gpt-4o-mini")  # still streaming
    assert await store.claim_job("purge", 3600)
    await store.save_installation(InstalledApp("", "T1", False, "xoxb-1", "UBOT", team_name="One", installer_id="U1"))
    await store.save_installation(InstalledApp("E1", "", True, "xoxe.xoxb-2", "UBOTE", bot_refresh_token="xoxe-1-r",
                                               bot_token_expires_at=1_900_000_000, enterprise_name="Org"))
    await store.issue_oauth_state("in-flight", datetime(2100, 1, 1, tzinfo=timezone.utc))  # not copied: it expires


async def answers(store: Store) -> dict[str, Any]:
    """What the bot and the operator reports read: windows, settings, usage, audit, feedback."""
    seen: dict[str, Any] = {}
    for key in KEYS:
        conversation = await store.conversation_id(key)
        workspace = await store.workspace_id(key.platform, key.workspace)
        seen[f"window {key}"] = (await store.window(conversation, BUDGET)).messages
        seen[f"settings {key}"] = await store.settings_for(key)
        seen[f"day {key}"] = await store.day_usage(workspace, DAY)
        seen[f"feedback {key}"] = await store.feedback_totals(workspace, "2000-01-01")
    seen["usage"] = await store.usage_rows("2000-01-01")
    seen["audit"] = await store.audit_log()
    seen["installations"] = [await store.find_installation("", "T1"), await store.find_installation("E1", "")]
    return seen


def counts_sqlite(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = table_order(conn)
        return {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}


def counts_postgres(url: str, tables: list[str]) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in tables}  # type: ignore[index]


async def built(path: Path) -> dict[str, Any]:
    store = Store.open(path)
    try:
        await fill(store)
        return await answers(store)
    finally:
        store.close()


def test_both_schemas_have_the_same_columns(tmp_path: Path, target: str) -> None:
    sqlite = SQLiteDatabase.open(tmp_path / "bot.db")
    postgres = PostgresDatabase.open(target)
    try:
        tables = [row[0] for row in sqlite.db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if row[0] != "_sqlite_migrations"]
        mine = {table: {row[1] for row in sqlite.db.conn.execute(f'PRAGMA table_info("{table}")')} for table in tables}
        theirs: dict[str, set[str]] = {}
        for table, column in postgres._run(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name != 'chatbots_migrations'"
        ).rows:
            theirs.setdefault(table, set()).add(column)
    finally:
        sqlite.close()
        postgres.close()
    assert "_sqlite_migrations" in NOT_COPIED and "messages" in mine
    assert mine == theirs


def test_tables_come_after_the_tables_they_refer_to(tmp_path: Path) -> None:
    sqlite = SQLiteDatabase.open(tmp_path / "bot.db")
    try:
        order = table_order(sqlite.db.conn)
    finally:
        sqlite.close()
    assert order[:3] == ["workspaces", "conversations", "messages"]
    assert set(order) == {"workspaces", "conversations", "messages", "settings", "audit", "usage_daily", "reply_parts",
                          "feedback", "moderation_log", "events", "jobs", "message_files",
                          "slack_installations", "notices"}


async def test_text_with_nul_characters_is_copied_with_the_stand_in(source: Path, target: str) -> None:
    """SQLite kept U+0000 that people or a model sent; PostgreSQL text cannot hold it."""
    sqlite = Store(SQLiteDatabase.open(source))
    conversation = await sqlite.conversation_id(KEYS[0])
    await sqlite.add_message(conversation, "user", "before\x00after", 3, platform_id="m\x001", author_name="A\x00da")
    sqlite.close()
    assert main(["migrate-db", "--to", target]) == 0

    copy = Store(PostgresDatabase.open(target))
    try:
        copied = await copy.conversation_id(KEYS[0])
        [message] = (await copy.window(copied, BUDGET)).messages
        assert (message.text, message.author_name) == ("before\ufffdafter", "A\ufffdda")
        assert await copy.add_message(copied, "user", "again", 1, platform_id="m\x001") is None, "its platform id still matches"
    finally:
        copy.close()


async def test_every_row_is_copied_and_postgresql_answers_as_sqlite_did(
    source: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await built(source)
    assert main(["migrate-db", "--to", target]) == 0
    out, err = capsys.readouterr()

    counts = counts_sqlite(source)
    assert all(counts.values()), f"the fixture fills every table: {counts}"
    assert counts_postgres(target, list(counts)) == counts | {"jobs": counts["jobs"] + 1}  # + the migrate-db mark
    for table, rows in counts.items():
        assert any(line.split()[:2] == [table, f"{rows:,}"] for line in out.splitlines()), (table, out)
    assert "every SQLite row is there" in out.splitlines()[-1]
    assert [line.split(":")[0] for line in err.strip().splitlines()] == list(counts), "one line per table off a TTY"

    copy = Store(PostgresDatabase.open(target))
    try:
        assert await answers(copy) == before
        with psycopg.connect(target) as conn:
            statuses = dict(conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall())
        assert statuses == {"ok": 24, "interrupted": 1, "streaming": 1}
    finally:
        copy.close()


async def test_running_it_again_copies_nothing_twice_and_brings_over_what_changed(
    source: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await built(source)
    assert main(["migrate-db", "--to", target.replace("postgresql://", "postgres://", 1)]) == 0
    first = counts_postgres(target, list(counts_sqlite(source)))
    capsys.readouterr()

    assert main(["migrate-db", "--to", target]) == 0
    assert counts_postgres(target, list(first)) == first
    out = capsys.readouterr().out
    assert "(0 rows written by this run)" in out

    # The bot kept running on SQLite: a new turn, a finished answer, more usage, a changed setting.
    store = Store.open(source)
    try:
        conversation = await store.conversation_id(KEYS[1])
        streaming = (await store.run(store.sql._run, "SELECT id FROM messages WHERE status = 'streaming'")).rows[0][0]
        await store.complete_answer(streaming, "finished late", 3, status="ok", platform_id="late", usage=(7, 3))
        await store.add_message(conversation, "user", "one more", 3, platform_id="more")
        workspace = await store.workspace_id("slack", "T1")
        await store.record_usage(workspace, "U1", DAY, "gpt-4o-mini", 7, 3)
        await store.set_setting_audited(workspace, "instructions", "Be thorough.", actor_id="A1")
        expected = await answers(store)
    finally:
        store.close()
    assert main(["migrate-db", "--to", target]) == 0
    assert counts_postgres(target, list(first)) == counts_sqlite(source) | {"jobs": first["jobs"]}
    copy = Store(PostgresDatabase.open(target))
    try:
        assert await answers(copy) == expected
    finally:
        copy.close()


async def test_rows_added_through_postgresql_afterwards_get_fresh_ids(
    source: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await built(source)
    assert main(["migrate-db", "--to", target]) == 0
    with sqlite3.connect(source) as conn:
        largest = {table: conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
                   for table in ("workspaces", "conversations", "messages", "audit", "moderation_log")}

    copy = Store(PostgresDatabase.open(target))
    try:
        conversation = await copy.conversation_id(ConversationKey("slack", "T9", "C9", "9.9"))
        message = await copy.add_message(conversation, "user", "after the move", 4, platform_id="new")
        old = await copy.conversation_id(KEYS[0])
        follow_up = await copy.add_message(old, "user", "and a follow-up", 4, platform_id="new2")
        workspace = await copy.workspace_id("slack", "T9")
        await copy.set_setting_audited(workspace, "instructions", "Hi.", actor_id="A9")
        await copy.record_moderation(KEYS[0], "in", "passed", [], None)
        assert (await copy.window(old, BUDGET)).messages[-1].text == "and a follow-up"
        ids = (await copy.run(copy.sql._run, "SELECT "
               "(SELECT MAX(id) FROM workspaces), (SELECT MAX(id) FROM audit), (SELECT MAX(id) FROM moderation_log)")).rows[0]
    finally:
        copy.close()
    assert conversation == largest["conversations"] + 1
    assert message == largest["messages"] + 1 and follow_up == largest["messages"] + 2
    assert ids == (largest["workspaces"] + 1, largest["audit"] + 1, largest["moderation_log"] + 1)


async def test_batches_smaller_than_a_table_copy_every_row(source: Path, target: str) -> None:
    await built(source)
    out, err = io.StringIO(), io.StringIO()
    assert migrate_db(str(source), target, out, err, batch=4) == 0
    counts = counts_sqlite(source)
    assert counts["messages"] > 4 * 5
    assert counts_postgres(target, list(counts)) == counts | {"jobs": counts["jobs"] + 1}


def test_an_unreachable_target_is_one_line_without_the_password(
    source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source.touch()
    assert main(["migrate-db", "--to", "postgresql://bot:hunter2@127.0.0.1:9/chatbots"]) != 0
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("chatbots: cannot reach --to postgresql://bot@127.0.0.1:9/chatbots: ")
    assert "hunter2" not in captured.err + captured.out and not captured.out


@pytest.mark.parametrize(("to", "message"), [
    ("mysql://host/db", "--to must be a postgresql:// or postgres:// URL"),
    ("postgresql://host:port/db", "--to has a port that is not a number"),
])
def test_a_target_that_is_not_postgresql_is_one_line(
    to: str, message: str, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate-db", "--to", to]) == 2
    assert capsys.readouterr().err.strip() == f"chatbots: {message}"


def test_a_missing_source_is_one_line_and_creates_nothing(
    source: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    assert main(["migrate-db", "--to", target]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"chatbots: no SQLite database at {source} to copy (set CHATBOTS_DB to the file the bot used)"
    assert not source.exists()


async def test_a_target_the_bot_already_wrote_to_is_refused(
    source: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await built(source)
    bot = Store(PostgresDatabase.open(target))
    try:
        await bot.conversation_id(ConversationKey("slack", "T5", "C5", "5.0"))
    finally:
        bot.close()
    assert main(["migrate-db", "--to", target]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "already holds rows (in workspaces) that migrate-db did not copy" in line
    assert counts_postgres(target, ["messages"]) == {"messages": 0}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_redraws_in_place() -> None:
    screen = Terminal()
    progress = Progress(screen)
    for done in (0, 5_000, 10_000):
        progress.update("messages", done, 12_000)
    progress.finish("messages", 12_000)
    frames = screen.getvalue().split("\r")[1:]
    assert len(frames) == 4 and screen.getvalue().count("\n") == 1
    assert frames[-1].rstrip("\n").endswith("[" + "#" * Progress.WIDTH + "]       12,000/12,000")
    assert "#" * 12 + "." * 18 in frames[1]


class WriterMidway(Progress):
    """A bot still writing the file: once conversations are copied, it starts a new conversation."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.StringIO())
        self.path = path

    def finish(self, table: str, total: int) -> None:
        super().finish(table, total)
        if table == "conversations":
            with sqlite3.connect(self.path) as conn:
                conn.execute("PRAGMA foreign_keys=ON")
                cursor = conn.execute("INSERT INTO conversations (workspace_id, channel, thread, created_at) "
                                      "VALUES (1, 'C7', '7.0', '2026-06-02T00:00:00.000000Z')")
                conn.execute("INSERT INTO messages (conversation_id, role, text, tokens, created_at) "
                             "VALUES (?, 'user', 'meanwhile', 3, '2026-06-02T00:00:00.000000Z')", [cursor.lastrowid])


async def test_a_bot_writing_the_file_meanwhile_cannot_split_a_conversation_from_its_messages(
    source: Path, target: str
) -> None:
    await built(source)
    before = counts_sqlite(source)
    sqlite = SQLiteDatabase.open(source)
    postgres = PostgresDatabase.open(target)
    try:
        copied = copy_all(sqlite.db.conn, postgres, WriterMidway(source))
    finally:
        sqlite.close()
        postgres.close()
    assert {row.table: row.source for row in copied} == before, "the copy is of one moment"
    assert counts_sqlite(source)["messages"] == before["messages"] + 1
    assert counts_postgres(target, ["messages"])["messages"] == before["messages"]


async def test_a_target_with_fewer_rows_than_the_source_fails_naming_the_table(
    source: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await built(source)
    PostgresDatabase.open(target).close()
    with psycopg.connect(target, autocommit=True) as conn:  # a target that quietly drops what it is given
        conn.execute("CREATE FUNCTION drop_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
        conn.execute("CREATE TRIGGER drop_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION drop_row()")
        try:
            assert main(["migrate-db", "--to", target]) == 1
        finally:
            conn.execute("DROP TRIGGER drop_events ON events")
            conn.execute("DROP FUNCTION drop_row()")
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1] == f"chatbots: events: {len(KEYS)} rows in SQLite but only 0 in {target}"
    assert "every SQLite row is there" not in out
