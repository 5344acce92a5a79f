"""Running on PostgreSQL: chosen by DATABASE_URL, one line when it cannot be reached, and riding out an outage."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
import pytest

from chatbots.config import Config
from chatbots.engine import STORAGE_NOTICE
from tests.postgres import empty
from tests.processes import bot_exit, free_port
from tests.slack_rig import slack_rig


class Outage:
    """A TCP relay between the bot and PostgreSQL that can cut every connection and refuse new ones.

    It runs its own event loop in a thread: the bot opens its database synchronously at start-up."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def start(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

        self._call(listen())

    def cut(self) -> None:
        """The database goes away: the listener closes and every open connection drops."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for pipe in list(self._pipes):
                pipe.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)

        self._call(close())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

            async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
                try:
                    while data := await source.read(65536):
                        sink.write(data)
                        await sink.drain()
                finally:
                    sink.close()

            await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))


@contextlib.contextmanager
def relay(postgres_url: str) -> Iterator[Outage]:
    parts = urlsplit(postgres_url)
    outage = Outage(parts.hostname or "127.0.0.1", parts.port or 5432)
    outage.start()
    try:
        yield outage
    finally:
        outage.stop()


async def health(port: int) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status


async def until_health(port: int, status: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while await health(port) != status:
            await asyncio.sleep(0.1)


async def test_database_url_selects_postgresql_and_a_conversation_lives_there(settings: Config, postgres_url: str) -> None:
    empty(postgres_url)
    async with slack_rig(replace(settings, database_url=postgres_url)) as rig:
        ts = await rig.mention("remember the word teal")
        await rig.reply_in("C1", ts)
    with psycopg.connect(postgres_url) as conn:
        texts = [row[0] for row in conn.execute("SELECT text FROM messages ORDER BY id")]
    assert texts == ["remember the word teal", "echo: remember the word teal"]


async def test_a_database_that_goes_away_ends_replies_with_a_message_and_the_bot_recovers(
    settings: Config, postgres_url: str
) -> None:
    empty(postgres_url)
    with relay(postgres_url) as outage:
        async with slack_rig(replace(settings, database_url=through(postgres_url, outage.port))) as rig:
            [answer] = await rig.reply_in("C1", await rig.mention("before"))
            assert answer.text == "echo: before"
            await rig.wait_outcomes(1)  # the turn has stored its answer
            outage.cut()
            await until_health(rig.bot.port, 503)
            ts = await rig.mention("during")
            shown = await rig.slack.wait_for(
                lambda: [m for m in rig.slack.messages("C1") if m.thread_ts == ts and "database" in m.text], timeout=15
            )
            assert STORAGE_NOTICE.split(" (")[0] in shown[-1].text
            outage.start()
            await until_health(rig.bot.port, 200)
            [after] = await rig.reply_in("C1", await rig.mention("after"))
            assert after.text == "echo: after"


async def test_an_unreachable_database_at_start_up_is_one_line_without_the_password() -> None:
    port = free_port()
    closed = free_port()
    env = {
        "OPENAI_API_KEY": "sk-test", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
        "DATABASE_URL": f"postgres://bot:hunter2@127.0.0.1:{closed}/chatbots",
    }
    code, stderr = await bot_exit(env, port)
    assert code != 0 and "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("chatbots: cannot use the database at postgres://bot@127.0.0.1:") and "DATABASE_URL" in line
    assert "hunter2" not in stderr


@pytest.mark.parametrize("value", ["mysql://x@y/z", "chatbots.db", "postgresql:/no-slashes"])
def test_database_url_must_name_postgresql(value: str) -> None:
    from chatbots.config import ConfigError

    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Config.from_env({"DATABASE_URL": value})


async def test_doctor_checks_the_postgresql_server(postgres_url: str) -> None:
    from chatbots.checks import CheckFailed, database
    from chatbots.store.postgres import PostgresDatabase

    empty(postgres_url)
    PostgresDatabase.open(postgres_url).close()
    row = await database(Config(database_url=postgres_url))
    assert row.detail.endswith("migrations applied, writable") and "postgres@" in row.detail
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM workspaces").fetchone() == (0,), "the write probe left nothing"
    with pytest.raises(CheckFailed, match="cannot use the database"):
        await database(Config(database_url=f"postgresql://postgres:secret@127.0.0.1:{free_port()}/x"))


async def test_a_replica_that_died_midway_leaves_an_answer_another_replica_marks_interrupted(
    settings: Config, postgres_url: str
) -> None:
    from datetime import datetime, timedelta, timezone

    from chatbots.engine import Engine
    from chatbots.model import OpenAIChat
    from chatbots.store import Store
    from chatbots.store.postgres import PostgresDatabase
    from chatbots.types import ConversationKey

    empty(postgres_url)
    now = [datetime(2026, 6, 1, tzinfo=timezone.utc)]
    dead = Store(PostgresDatabase.open(postgres_url, lambda: now[0]))
    conversation = await dead.conversation_id(ConversationKey("slack", "T1", "C1", "1"))
    row = await dead.begin_answer(conversation, "gpt-4o-mini")
    await dead.save_partial(row, "half of it")
    dead.close()  # the replica is gone; its answer row still says streaming
    survivor = Engine(Store(PostgresDatabase.open(postgres_url, lambda: now[0])), OpenAIChat.from_settings(settings), settings)
    try:
        await survivor.upkeep(None)
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT status FROM messages").fetchone() == ("streaming",), "within its lease"
        now[0] += timedelta(seconds=survivor.answer_lease + 1)
        await survivor.upkeep(None)
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT status FROM messages").fetchone() == ("interrupted",)
    finally:
        await survivor.close()


async def test_every_operator_command_works_on_postgresql(
    postgres_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatbots.cli import main
    from chatbots.store import Store
    from chatbots.store.postgres import PostgresDatabase
    from chatbots.types import ConversationKey

    empty(postgres_url)
    store = Store(PostgresDatabase.open(postgres_url))
    workspace = await store.workspace_id("slack", "T1")
    await store.set_setting_audited(workspace, "limit_user", "5000", actor_id="UADMIN")
    conversation = await store.conversation_id(ConversationKey("slack", "T1", "C1", "1.0"))
    await store.add_message(conversation, "user", "what is the capital of France?", 9, author_id="U1", platform_id="q")
    answer = await store.add_message(conversation, "assistant", "Lyon.", 3)
    assert answer is not None
    await store.record_reply_parts(workspace, answer, ["2.0"])
    await store.record_feedback(workspace, "2.0", "U1", -1)
    await store.record_usage(workspace, "U1", store.clock().date().isoformat(), "gpt-4o-mini", 1000, 500)
    await store.record_moderation(ConversationKey("slack", "T1", "C1", "1.0"), "in", "flagged", ["hate"], None)
    store.close()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", postgres_url)
    monkeypatch.setenv("CHATBOTS_DB", str(tmp_path / "unused.db"))
    expected = {
        ("usage",): "gpt-4o-mini", ("audit",): "limit_user", ("feedback",): "Lyon.",
        ("moderation-log", "--flagged"): "hate", ("export", "--workspace", "slack:T1"): "capital of France",
        ("purge", "--days", "30"): "Deleted 0 messages",
    }
    for command, needle in expected.items():
        assert main(list(command)) == 0, command
        assert needle in capsys.readouterr().out, command
    assert not (tmp_path / "unused.db").exists(), "DATABASE_URL wins over CHATBOTS_DB"
