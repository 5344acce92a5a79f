"""A database that is locked or unusable gives a clear message, never a crash or a traceback in chat.

The operator commands run as real processes, each fault with every command at once, so the suite waits for
the bot's busy timeout (5 s, on the locked file) only once.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatbots.cli import main
from chatbots.config import Settings
from chatbots.engine import STORAGE_NOTICE, Engine
from chatbots.model import OpenAIChat
from chatbots.store import Store
from chatbots.types import ConversationKey, Inbound
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.processes import free_port

KEY = ConversationKey("t", "T1", "C1", "1")


async def test_a_locked_database_is_a_message_in_chat_and_the_bot_recovers(
    settings: Settings, model_server: FakeModelServer
) -> None:
    engine = Engine(Store.open(settings.db_path, busy_timeout=0.05), OpenAIChat.from_settings(settings), settings)
    other = sqlite3.connect(settings.db_path)
    other.execute("BEGIN EXCLUSIVE")
    reply = RecordingReply()
    result = await engine.handle(Inbound(KEY, "m1", "U1", "Ada", "hello?"), reply)
    assert result.status == "storage_error" and reply.notice == STORAGE_NOTICE
    assert not model_server.requests
    other.rollback()
    other.close()
    again = RecordingReply()
    assert (await engine.handle(Inbound(KEY, "m2", "U1", "Ada", "and now?"), again)).status == "answered"
    await engine.close()


def test_an_unusable_database_path_stops_the_bot_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("CHATBOTS_DB", str(tmp_path))  # a folder, not a file
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("chatbots: cannot use the database at") and "CHATBOTS_DB" in err
    assert f"it is a folder; set CHATBOTS_DB to a file path such as {tmp_path / 'chatbots.db'}" in err
    assert len(err.splitlines()) == 1


COMMANDS = {
    "chat": ["chat", "hello"],
    "usage": ["usage"],
    "audit": ["audit"],
    "feedback": ["feedback"],
    "moderation-log": ["moderation-log"],
    "purge": ["purge", "--days", "30"],
    "export": ["export", "--workspace", "slack:T1"],
    "run": ["run"],
    "doctor": ["doctor"],
}
WRITERS = ("chat", "purge", "run")
"""The commands that must write to start; the others only read, and reading works beside a writer."""
READERS = tuple(name for name in COMMANDS if name not in (*WRITERS, "doctor"))


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def _chatbots(args: list[str], env: dict[str, str], cwd: Path) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatbots.cli", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        return Ran(-1, "", f"`chatbots {' '.join(args)}` did not stop on its own")
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def _commands_on(databases: dict[str, tuple[Path, tuple[str, ...]]], cwd: Path) -> dict[str, dict[str, Ran]]:
    """The named commands on each database, all at once, from a clean environment (and no .env file)."""
    async with FakeModelServer() as model_server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_"))}
        env |= {
            "OPENAI_BASE_URL": model_server.base_url, "OPENAI_API_KEY": "sk-test", "CHATBOTS_MODERATION": "off",
            "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        }
        runs = [(fault, name, _chatbots(COMMANDS[name], env | {"CHATBOTS_DB": str(db), "PORT": str(free_port())}, cwd))
                for fault, (db, names) in databases.items() for name in names]
        ran = await asyncio.gather(*(run for _, _, run in runs))
    found: dict[str, dict[str, Ran]] = {fault: {} for fault in databases}
    for (fault, name, _), outcome in zip(runs, ran):
        found[fault][name] = outcome
    return found


def existing_database(folder: Path) -> Path:
    folder.mkdir(parents=True)
    Store.open(folder / "bot.db").close()
    return folder / "bot.db"


def damage(db: Path) -> None:
    """Keep what opening reads (the schema and the migration history); turn every other table and index to garbage."""
    with sqlite3.connect(db) as probe:
        probe.execute("PRAGMA journal_mode=DELETE")
        page_size = probe.execute("PRAGMA page_size").fetchone()[0]
        pages = [row[0] for row in probe.execute(
            "SELECT rootpage FROM sqlite_master WHERE rootpage > 1 AND tbl_name != '_sqlite_migrations'"
        )]
    probe.close()
    data = bytearray(db.read_bytes())
    for page in pages:
        data[(page - 1) * page_size : page * page_size] = b"\xff" * page_size
    db.write_bytes(bytes(data))


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """A file this process cannot write. Root ignores permission bits, so for root it is made immutable."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Ran]]:
    """Operator commands against each broken database, run once for the tests below.

    All at once: the commands on the locked file wait out the bot's busy timeout (5 s) while the others run.
    Every command meets the locked and the damaged file (each fails at a different query); the read-only file
    fails the same writes as the locked one, and a missing folder fails every command in Store.open.
    """
    root = tmp_path_factory.mktemp("faults")
    locked, read_only_db, damaged = (existing_database(root / name) for name in ("locked", "read-only", "damaged"))
    damage(damaged)
    databases = {
        "locked": (locked, tuple(COMMANDS)),
        "damaged": (damaged, tuple(COMMANDS)),
        "read-only": (read_only_db, (*WRITERS, "usage", "doctor")),
        "missing folder": (root / "gone" / "bot.db", ("run", "purge", "usage", "doctor")),
    }
    other = sqlite3.connect(locked)
    other.execute("BEGIN IMMEDIATE")  # another writer, holding its lock past the bot's busy timeout
    try:
        with read_only(read_only_db):
            found = asyncio.run(_commands_on(databases, root))
    finally:
        other.rollback()
        other.close()
    assert not (root / "gone").exists(), "a missing folder is named, not created"
    return found


def assert_no_traceback(ran: dict[str, Ran]) -> None:
    for name, outcome in ran.items():
        assert "Traceback" not in outcome.err + outcome.out, (name, outcome)


def assert_one_line(outcome: Ran, *words: str) -> None:
    assert outcome.code == 2, outcome
    [line] = outcome.err.strip().splitlines()
    assert line.startswith("chatbots: cannot use the database at ") and "(check CHATBOTS_DB: " in line, line
    for word in words:
        assert word in line, line


def assert_reads(outcome: Ran) -> None:
    assert outcome.code == 0 and "chatbots:" not in outcome.err, outcome


def assert_doctor_fails_the_database_check(outcome: Ran) -> None:
    assert outcome.code == 1 and re.search(r"^database\s+FAIL", outcome.out, re.MULTILINE), outcome


def test_a_locked_database_stops_each_writing_command_with_one_line_and_reports_still_read(
    faults: dict[str, dict[str, Ran]],
) -> None:
    ran = faults["locked"]
    assert_no_traceback(ran)
    for name in WRITERS:
        assert_one_line(ran[name], "database is locked", "another process holds a write lock")
    for name in READERS:
        assert_reads(ran[name])
    assert_doctor_fails_the_database_check(ran["doctor"])


def test_a_read_only_database_stops_each_writing_command_with_one_line_and_reports_still_read(
    faults: dict[str, dict[str, Ran]],
) -> None:
    ran = faults["read-only"]
    assert_no_traceback(ran)
    for name in WRITERS:
        assert_one_line(ran[name], "readonly", "make the file and its folder writable")
    assert_reads(ran["usage"])
    assert_doctor_fails_the_database_check(ran["doctor"])


def test_a_damaged_database_is_one_line_from_every_command(faults: dict[str, dict[str, Ran]]) -> None:
    ran = faults["damaged"]
    assert_no_traceback(ran)
    for name in (*WRITERS, *READERS):
        assert_one_line(ran[name], "malformed", "restore it from a backup")
    assert_doctor_fails_the_database_check(ran["doctor"])


def test_a_missing_folder_is_one_line_naming_it(faults: dict[str, dict[str, Ran]]) -> None:
    ran = faults["missing folder"]
    assert_no_traceback(ran)
    folder = Path(ran["run"].err.split("the folder ")[-1].split(" does not exist")[0])
    assert folder.name == "gone"
    for name in ("run", "purge", "usage"):
        assert_one_line(ran[name], f"the folder {folder} does not exist; create it")
    assert_doctor_fails_the_database_check(ran["doctor"])
