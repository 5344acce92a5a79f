"""A database that is locked or unusable gives a clear message, never a crash or a traceback in chat.

Every operator command meets each fault: a file another process holds a write lock on, a read-only file, a
damaged file and a missing folder. Real processes, all at once (so the bot's 5 s busy timeout on the locked
file is waited out once), for each command that waits on the lock and for `chatbots run` on each fault; the
rest run in this process, which is quicker and fails the same way on a traceback.
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
from chatbots.config import Config
from chatbots.engine import STORAGE_NOTICE, Engine
from chatbots.model import OpenAIChat
from chatbots.store import Store
from chatbots.types import ConversationKey, Inbound
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.processes import free_port

pytestmark = pytest.mark.sqlite_only  # locks, permissions and damage of a SQLite file

KEY = ConversationKey("t", "T1", "C1", "1")


async def test_a_locked_database_is_a_message_in_chat_and_the_bot_recovers(
    settings: Config, model_server: FakeModelServer
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


def clean_env(db: Path, model_url: str, command: str) -> dict[str, str]:
    """The process environment without the developer's settings, pointed at db; a platform only for `run`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_"))}
    env |= {"CHATBOTS_DB": str(db), "OPENAI_BASE_URL": model_url, "OPENAI_API_KEY": "sk-test", "CHATBOTS_MODERATION": "off"}
    if command == "run":
        env |= {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "PORT": str(free_port()),
                "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/"}
    return env


async def _process(args: list[str], env: dict[str, str], cwd: Path) -> Ran:
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


async def _processes(runs: list[tuple[str, str, Path]], cwd: Path) -> dict[tuple[str, str], Ran]:
    """(fault, command, database) -> what `python -m chatbots.cli COMMAND` did, all started at once."""
    async with FakeModelServer() as model_server:
        ran = await asyncio.gather(*(_process(COMMANDS[name], clean_env(db, model_server.base_url, name), cwd)
                                     for _, name, db in runs))
    return {(fault, name): outcome for (fault, name, _), outcome in zip(runs, ran)}


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


@dataclass(frozen=True)
class Faults:
    databases: dict[str, Path]
    processes: dict[tuple[str, str], Ran]
    """(fault, command) -> the real process's outcome."""


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    """The broken databases, and the real processes run against them (once, for every test below)."""
    root = tmp_path_factory.mktemp("faults")
    databases = {name: existing_database(root / name) for name in ("locked", "read-only", "damaged")}
    damage(databases["damaged"])
    databases["missing folder"] = root / "gone" / "bot.db"
    runs = [("locked", name, databases["locked"]) for name in (*WRITERS, "doctor")]
    runs += [(fault, "run", databases[fault]) for fault in ("read-only", "damaged", "missing folder")]
    other = sqlite3.connect(databases["locked"])
    other.execute("BEGIN IMMEDIATE")  # another writer, holding its lock past the bot's busy timeout
    try:
        with read_only(databases["read-only"]):
            yield Faults(databases, asyncio.run(_processes(runs, root)))
    finally:
        other.rollback()
        other.close()
    assert not (root / "gone").exists(), "a missing folder is named, not created"


def in_process(
    name: str, db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cwd: Path
) -> Ran:
    env = clean_env(db, f"http://127.0.0.1:{free_port()}/v1", name)
    with monkeypatch.context() as patch:
        for key in os.environ.keys() - env.keys():
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        patch.chdir(cwd)
        code = main(COMMANDS[name])
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def assert_one_line(outcome: Ran, *words: str) -> None:
    assert "Traceback" not in outcome.out + outcome.err, outcome
    assert outcome.code == 2, outcome
    [line] = outcome.err.strip().splitlines()
    assert line.startswith("chatbots: cannot use the database at ") and "(check CHATBOTS_DB: " in line, line
    for word in words:
        assert word in line, line


def assert_reads(outcome: Ran) -> None:
    assert outcome.code == 0 and "chatbots:" not in outcome.err and "Traceback" not in outcome.err, outcome


def assert_doctor_fails_the_database_check(outcome: Ran) -> None:
    assert "Traceback" not in outcome.out + outcome.err, outcome
    assert outcome.code == 1 and re.search(r"^database\s+FAIL", outcome.out, re.MULTILINE), outcome


@pytest.mark.parametrize("name", COMMANDS)
def test_a_locked_database_stops_each_writing_command_with_one_line_and_reports_still_read(
    name: str, faults: Faults, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if name == "doctor":
        assert_doctor_fails_the_database_check(faults.processes["locked", name])
    elif name in WRITERS:
        assert_one_line(faults.processes["locked", name], "database is locked", "another process holds a write lock")
    else:  # reading goes on beside a writer (WAL), and takes no wait
        assert_reads(in_process(name, faults.databases["locked"], monkeypatch, capsys, tmp_path))


@pytest.mark.parametrize("name", COMMANDS)
def test_a_read_only_database_stops_each_writing_command_with_one_line_and_reports_still_read(
    name: str, faults: Faults, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if name == "run":
        assert_one_line(faults.processes["read-only", "run"], "readonly", "make the file and its folder writable")
    ran = in_process(name, faults.databases["read-only"], monkeypatch, capsys, tmp_path)
    if name == "doctor":
        assert_doctor_fails_the_database_check(ran)
    elif name in WRITERS:
        assert_one_line(ran, "readonly", "make the file and its folder writable")
    else:
        assert_reads(ran)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_damaged_database_is_one_line_from_every_command(
    name: str, faults: Faults, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if name == "run":
        assert_one_line(faults.processes["damaged", "run"], "malformed", "restore it from a backup")
    ran = in_process(name, faults.databases["damaged"], monkeypatch, capsys, tmp_path)
    if name == "doctor":
        assert_doctor_fails_the_database_check(ran)
    else:
        assert_one_line(ran, "malformed", "restore it from a backup")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_missing_folder_is_one_line_naming_it_from_every_command(
    name: str, faults: Faults, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = faults.databases["missing folder"]
    advice = f"the folder {db.parent} does not exist; create it"
    if name == "run":
        assert_one_line(faults.processes["missing folder", "run"], advice)
    ran = in_process(name, db, monkeypatch, capsys, tmp_path)
    if name == "doctor":
        assert_doctor_fails_the_database_check(ran)
    else:
        assert_one_line(ran, advice)
