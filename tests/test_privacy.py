"""Privacy: retention, forgetting, redaction, clean logs, and erasing a workspace that removes the app."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from chatbots.cli import main
from chatbots.commands import Caller, Commands
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.logs import configure_logging
from chatbots.model import OpenAIChat
from chatbots.retention import upkeep
from chatbots.store import Store
from chatbots.types import ConversationKey, Inbound
from tests.backend import database_env, open_store, rows, value
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.fakes.slack import app_uninstalled, tokens_revoked
from tests.slack_rig import slack_rig


def count(store: Store, sql: str) -> int:
    return int(value(store, sql))


async def test_retention_deletes_old_messages_but_keeps_usage_totals(settings: Config, model_server: FakeModelServer) -> None:
    now = [datetime(2026, 1, 1, 12, tzinfo=timezone.utc)]
    store = open_store(settings, clock=lambda: now[0])
    engine = Engine(store, OpenAIChat.from_settings(settings), settings)
    key = ConversationKey("slack", "T1", "C1", "1.0")
    await engine.handle(Inbound(key, "old", "U1", "Ada", "an old secret"), RecordingReply())
    now[0] += timedelta(days=20)
    await engine.handle(Inbound(key, "new", "U1", "Ada", "a recent question"), RecordingReply())
    usage_before = count(store, "SELECT SUM(prompt_tokens + completion_tokens) FROM usage_daily")

    assert await upkeep(store, retention_days=7) == 2
    assert [r[0] for r in rows(store, "SELECT text FROM messages ORDER BY id")] == ["a recent question", "echo: a recent question"]
    assert count(store, "SELECT SUM(prompt_tokens + completion_tokens) FROM usage_daily") == usage_before
    await engine.handle(Inbound(key, "next", "U1", "Ada", "what was the secret?"), RecordingReply())
    assert "an old secret" not in str(model_server.requests[-1]["messages"]), "purged text never returns to the model"
    await engine.close()


def test_purge_command_uses_the_retention_setting(settings: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    database_env(monkeypatch, settings)
    monkeypatch.setenv("CHATBOTS_RETENTION_DAYS", "30")
    assert main(["purge"]) == 0
    assert "older than 30 days" in capsys.readouterr().out
    monkeypatch.delenv("CHATBOTS_RETENTION_DAYS")
    assert main(["purge"]) == 2


async def test_people_who_took_part_may_forget_their_thread_others_may_not(engine: Engine) -> None:
    key = ConversationKey("discord", "G1", "C1", "thread-7")
    await engine.handle(Inbound(key, "m1", "U1", "Ada", "my private plan"), RecordingReply())
    commands = Commands.for_engine(engine)
    refused = await commands.run(Caller(key, "U2", is_admin=False), "forget")
    assert "Only admins, or people who took part" in refused
    assert "(2 messages)" in await commands.run(Caller(key, "U1", is_admin=False), "forget")
    assert count(engine.store, "SELECT count(*) FROM messages") == 0


async def test_redaction_applies_to_what_the_model_receives_and_what_is_stored(
    make_engine, model_server: FakeModelServer  # type: ignore[no-untyped-def]
) -> None:
    engine = make_engine(redact=frozenset({"emails", "phones", "cards", "keys"}))
    text = "I'm ada@example.com, +1 415 555 0100, card 4242 4242 4242 4242, key sk-live-abcdefghijklmnop1234"
    await engine.handle(Inbound(ConversationKey("t", "T", "C", "1"), "m", "U1", "Ada", text), RecordingReply())
    sent = model_server.requests[0]["messages"][-1]["content"]
    assert sent == "I'm [email], [phone], card [card], key [secret]"
    stored = value(engine.store, "SELECT text FROM messages WHERE role = 'user'")
    assert stored == sent


async def test_logs_never_contain_message_text_or_secrets(settings: Config, caplog: pytest.LogCaptureFixture) -> None:
    secret_key = "sk-PLANTED-api-key-0123456789"
    planted_text = "PLANTED-MESSAGE-TEXT about the merger"
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    async with slack_rig(replace(settings, openai_api_key=secret_key, moderation=True)) as rig:
        rig.model.queue(status=429, retry_after=0)
        await rig.reply_in("C1", await rig.mention(planted_text))
        await rig.reply_in("C1", await rig.mention("fail please " + planted_text))
        rig.slack.fail_next("chat.startStream", status=429, retry_after=0)
        await rig.reply_in("C1", await rig.mention("again " + planted_text))
    logged = caplog.text
    assert len(caplog.records) > 5, "the flow did log"
    for planted in (secret_key, planted_text, "xoxb-test-token", "test-signing-secret", "echo:"):
        assert planted not in logged, f"{planted!r} leaked into the logs"


async def test_uninstalling_the_app_erases_that_workspace_only(settings: Config) -> None:
    async with slack_rig(settings) as rig:
        for team in ("T1", "T2"):
            await rig.reply_in("C1", await rig.mention(f"hello from {team}", team=team))
        store = rig.bot.engine.store
        await store.set_setting_audited(await store.workspace_id("slack", "T1"), "limit_user", "5", actor_id="UADMIN")
        await rig.deliver(app_uninstalled(), team="T1")
        assert "workspace_deleted" in await rig.wait_outcomes(3)  # turns may finish storing after it
        texts = [r[0] for r in rows(store, "SELECT text FROM messages ORDER BY id")]
        assert texts == ["hello from T2", "echo: hello from T2"]
        for table in ("settings", "audit"):
            assert count(store, f"SELECT count(*) FROM {table}") == 0
        assert count(store, "SELECT count(*) FROM usage_daily") == 1


async def test_a_revoked_bot_token_erases_the_workspace_but_user_tokens_do_not(settings: Config) -> None:
    async with slack_rig(settings) as rig:
        await rig.reply_in("C1", await rig.mention("hello"))
        await rig.deliver(tokens_revoked(bot_ids=[], oauth_ids=["U1"]))
        await rig.deliver(tokens_revoked(bot_ids=["UBOT"]))
        outcomes = await rig.wait_outcomes(3)  # the turn's own outcome may land after the reply shows
        assert [o for o in outcomes if not o.startswith("turn:")] == ["ignored", "workspace_deleted"]
        assert count(rig.bot.engine.store, "SELECT count(*) FROM messages") == 0
