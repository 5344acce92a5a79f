"""A database that is locked or unusable gives a clear message, never a crash or a traceback in chat."""

from __future__ import annotations

import sqlite3
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
    assert len(err.splitlines()) == 1
