"""The real `chatbots run` process: SIGTERM drains replies in flight; SIGKILL midway loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatbots.config import Config
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import (
    FakeSlack,
    app_mention,
    channel_message,
    event_callback,
    next_ts,
    post_signed,
)
from tests.processes import bot_process, free_port

SECRET = "lifecycle-secret"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeSlack, FakeModelServer]]:
    async with FakeSlack() as slack, FakeModelServer() as model:
        yield slack, model


def bot_env(slack: FakeSlack, model: FakeModelServer, db: Path, database_url: str | None = None) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "sk-test", "CHATBOTS_MODERATION": "off",
        "SLACK_BOT_TOKEN": "xoxb-lifecycle", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url,
        "CHATBOTS_DB": str(db), "CHATBOTS_LOG_LEVEL": "WARNING", **({"DATABASE_URL": database_url} if database_url else {}),
    }


async def post(port: int, event: dict) -> int:
    status, _ = await post_signed(None, f"http://127.0.0.1:{port}/slack/events", event_callback("T1", event), SECRET)
    return status


async def test_sigterm_finishes_the_reply_in_flight_refuses_new_work_and_exits_0(
    fakes: tuple[FakeSlack, FakeModelServer], settings: Config
) -> None:
    slack, model = fakes
    port = free_port()
    model.queue("the last answer before shutdown", hold=True)
    env = bot_env(slack, model, Path(settings.db_path), settings.database_url)
    async with bot_process(env, port, stderr=asyncio.subprocess.PIPE) as bot:
        ts = next_ts()
        assert await post(port, app_mention("C1", "U1", "<@UBOT> one more", ts=ts)) == 200
        await model.wait_for_requests(1)
        bot.send_signal(signal.SIGTERM)
        assert bot.stderr is not None
        while b"received SIGTERM" not in await asyncio.wait_for(bot.stderr.readline(), 10):
            pass
        status = await post(port, app_mention("C1", "U1", "<@UBOT> too late", ts=next_ts()))
        assert status == 503
        model.release_held()
        assert await asyncio.wait_for(bot.wait(), 15) == 0
    [answer] = [m for m in slack.messages("C1") if m.thread_ts == ts]
    assert answer.text == "the last answer before shutdown" and answer.stream_state == "completed"
    assert len(model.requests) == 1


@pytest.mark.sqlite_only  # one process restarting on its file; replicas on PostgreSQL: test_replica_processes.py
async def test_sigkill_midway_then_restart_loses_no_message_and_posts_nothing_twice(
    fakes: tuple[FakeSlack, FakeModelServer], tmp_path: Path
) -> None:
    slack, model = fakes
    db = tmp_path / "bot.db"
    model.chunk_delay = 0.2
    model.queue("a long and slow answer that will never be finished by this process", chunks=30)
    port = free_port()
    ts = next_ts()
    async with bot_process(bot_env(slack, model, db), port) as bot:
        assert await post(port, app_mention("C1", "U1", "<@UBOT> explain everything", ts=ts)) == 200
        await slack.wait_for_call("chat.startStream")
        bot.kill()
        await bot.wait()

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT role, text, status FROM messages ORDER BY id").fetchall()
    assert rows[0] == ("user", "explain everything", "ok")
    assert rows[1][0] == "assistant" and rows[1][2] == "streaming"

    model.chunk_delay = 0
    async with bot_process(bot_env(slack, model, db), port):
        assert await post(port, channel_message("C1", "U1", "are you still there?", thread_ts=ts)) == 200
        await slack.wait_for(lambda: any(m.text == "echo: are you still there?" for m in slack.messages("C1")))
    with sqlite3.connect(db) as conn:
        statuses = conn.execute("SELECT role, status FROM messages ORDER BY id").fetchall()
    assert statuses == [("user", "ok"), ("assistant", "interrupted"), ("user", "ok"), ("assistant", "ok")]
    history = [m["content"] for m in model.requests[-1]["messages"][1:]]
    assert history[0] == "explain everything" and history[1].endswith("[This answer was interrupted.]")
    assert len(slack.calls_to("chat.startStream")) == 2, "one stream per question: nothing posted twice"
