"""`chatbots doctor`: every check against the real fakes on 127.0.0.1, each failure with a fix naming the variable."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from adapters.doctor import doctor
from adapters.slack.checks import SLACK_BOT_SCOPES
from chatbots.config import Config
from chatbots.store.postgres import safe_url
from tests.backend import database_url, open_store, value
from tests.fakes.discord import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import FakeSlack, serve

OPENAI_KEY = "sk-doctor-secret-key"
SLACK_BOT = "xoxb-doctor-secret-bot"
SLACK_APP = "xapp-1-doctor-secret-app"
SIGNING = "doctor-signing-secret"
DISCORD_TOKEN = "doctor.discord.secret-token"
SECRETS = (OPENAI_KEY, SLACK_BOT, SLACK_APP, SIGNING, DISCORD_TOKEN)
MANIFESTS = Path(__file__).parents[1] / "adapters" / "slack" / "manifests"
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, the connection is refused


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(scopes=",".join(sorted(SLACK_BOT_SCOPES))) as fake:
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=DISCORD_TOKEN) as fake:
        yield fake


@pytest.fixture
def base(model_server: FakeModelServer, tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """Model server and moderation on the fake, no platform; the suite's database."""
    return Config(
        openai_api_key=OPENAI_KEY,
        openai_base_url=model_server.base_url,
        db_path=str(tmp_path / "chatbots.db"),
        database_url=database_url(request),
        moderation=True,
    )


@pytest.fixture
def full(base: Config, slack: FakeSlack, discord_fake: FakeDiscord) -> Config:
    """Everything configured: Slack in Socket Mode and Discord, on their fakes."""
    return replace(
        base,
        slack_bot_token=SLACK_BOT,
        slack_app_token=SLACK_APP,
        slack_api_url=slack.api_url,
        discord_bot_token=DISCORD_TOKEN,
        discord_api_url=discord_fake.api_url,
    )


async def run(settings: Config, **options: float) -> tuple[int, str, dict[str, list[str]], list[str]]:
    """Run doctor: exit code, the whole text, each row split into columns by check name, and the fix lines."""
    code, text = await doctor(settings, **options)
    for secret in SECRETS:
        assert secret not in text
    table, _, rest = text.partition("\n\n")
    rows = {}
    for line in table.splitlines()[1:]:
        name = line[:12].strip()
        status, _, detail = line[12:].strip().partition(" ")
        rows[name] = [status, detail.strip()]
    fixes = [line for line in rest.splitlines() if line.startswith("fix: ")]
    return code, text, rows, fixes


def fix_for(fixes: list[str], check: str) -> str:
    found = [line for line in fixes if line.startswith(f"fix: {check}: ")]
    assert len(found) == 1, fixes
    return found[0]


async def test_everything_configured_and_working_is_all_ok(full: Config, slack: FakeSlack) -> None:
    code, text, rows, fixes = await run(full)

    assert code == 0, text
    assert {name: row[0] for name, row in rows.items()} == {
        "database": "ok", "model server": "ok", "moderation": "ok", "slack": "ok", "discord": "ok"}
    assert fixes == []
    expected = (re.escape(safe_url(full.database_url)) + r": \d+ migrations applied, writable" if full.database_url
                else re.escape(full.db_path) + r": \d+ migrations? applied, writable, created now")
    assert re.fullmatch(expected, rows["database"][1])
    assert "gpt-4o-mini among them" in rows["model server"][1]
    assert rows["slack"][1] == "team Fake Team (T1), bot user chatbot (UBOT), Socket Mode (app token works)"
    assert rows["discord"][1].endswith("message content intent enabled")
    # Socket Mode is proven with the app token, without opening the websocket.
    assert [call.token for call in slack.calls_to("apps.connections.open")] == [SLACK_APP]
    assert slack.socket_connects == 0


async def test_the_table_is_aligned_and_a_run_twice_changes_nothing(base: Config) -> None:
    await run(base)
    code, text, rows, _ = await run(base)

    assert code == 0
    table, _, after = text.partition("\n\n")
    header, *lines = table.splitlines()
    assert header.split() == ["check", "status", "detail"]
    assert [line[:12].strip() for line in lines] == ["database", "model server", "moderation", "slack", "discord"]
    assert {line.index(rows[line[:12].strip()][0]) for line in lines} == {header.index("status")}
    assert {line.index(rows[line[:12].strip()][1]) for line in lines} == {header.index("detail")}
    assert "created now" not in rows["database"][1]
    assert rows["slack"] == ["skipped", "SLACK_BOT_TOKEN not set"]
    assert rows["discord"] == ["skipped", "DISCORD_BOT_TOKEN not set"]
    assert after.startswith("note: no platform is configured")


async def test_unreachable_model_server_fails_with_the_base_url_hint(base: Config) -> None:
    code, _, rows, fixes = await run(replace(base, openai_base_url=UNREACHABLE, moderation=False))

    assert code == 1
    assert rows["model server"][0] == "FAIL"
    assert "cannot reach http://127.0.0.1:9/v1" in rows["model server"][1]
    assert "OPENAI_BASE_URL" in fix_for(fixes, "model server")
    assert rows["database"][0] == "ok"  # one failure does not hide the other checks


async def test_a_model_the_server_does_not_list_fails_naming_the_models_it_has(base: Config) -> None:
    code, _, rows, fixes = await run(replace(base, model="llama3"))

    assert code == 1
    assert rows["model server"][0] == "FAIL"
    assert rows["model server"][1].endswith("model llama3 not served by this gateway: available are gpt-4o, gpt-4o-mini")
    fix = fix_for(fixes, "model server")
    assert "CHATBOTS_MODEL" in fix and "gpt-4o, gpt-4o-mini" in fix


async def test_model_server_refusing_the_key_points_at_openai_api_key(base: Config) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "Incorrect API key provided"}}, status=401)

    app = web.Application()
    app.router.add_get("/v1/models", refuse)
    async with serve(app) as url:
        code, _, rows, fixes = await run(replace(base, openai_base_url=url + "/v1", moderation=False))

    assert code == 1
    assert rows["model server"] == ["FAIL", f"{url}/v1: key refused to GET /models (status 401)"]
    assert "OPENAI_API_KEY" in fix_for(fixes, "model server")


async def test_a_gateway_that_cannot_check_the_key_is_reported_as_refusing_it(base: Config) -> None:
    async def no_key_database(request: web.Request) -> web.Response:  # LiteLLM's proxy without a database
        body = {"error": {"message": "No connected db.", "type": "no_db_connection", "param": None, "code": "400"}}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_get("/v1/models", no_key_database)
    async with serve(app) as url:
        code, _, rows, fixes = await run(replace(base, openai_base_url=url + "/v1", moderation=False))

    assert code == 1
    assert rows["model server"][1] == f"{url}/v1: key refused to GET /models (status 400, type no_db_connection, code 400)"
    assert "OPENAI_API_KEY" in fix_for(fixes, "model server")


async def test_a_server_without_a_model_list_is_ok(base: Config) -> None:
    async with serve(web.Application()) as url:  # answers 404 to everything, like many chat-only servers
        code, _, rows, _ = await run(replace(base, openai_base_url=url + "/v1", moderation=False))

    assert code == 0
    assert rows["model server"] == ["ok", f"{url}/v1: reachable (no model list offered)"]


async def test_no_api_key_and_no_base_url_is_a_failed_check_not_a_crash(base: Config) -> None:
    code, _, rows, fixes = await run(replace(base, openai_api_key=None, openai_base_url=None))

    assert code == 1
    assert rows["model server"] == ["FAIL", "OPENAI_API_KEY is not set"]
    assert "OPENAI_API_KEY" in fix_for(fixes, "model server")
    assert rows["moderation"][0] == "FAIL"
    assert "CHATBOTS_MODERATION" in fix_for(fixes, "moderation")


@pytest.mark.parametrize("status", [404, 500])
async def test_a_failing_moderation_endpoint_fails_with_a_hint(base: Config, model_server: FakeModelServer,
                                                               status: int) -> None:
    model_server.moderation_status = status
    code, _, rows, fixes = await run(base)

    assert code == 1
    assert rows["moderation"][0] == "FAIL"
    assert f"status {status}" in rows["moderation"][1] or f"({status})" in rows["moderation"][1]
    assert ("no moderation endpoint" if status == 404 else "server error") in rows["moderation"][1]
    assert "every message would be refused" in rows["moderation"][1]
    fix = fix_for(fixes, "moderation")
    assert "CHATBOTS_MODERATION_BASE_URL" in fix and "CHATBOTS_MODERATION=off" in fix
    assert model_server.moderation_requests[0]["model"] == "omni-moderation-latest"


async def test_moderation_works_and_is_skipped_when_off(base: Config, model_server: FakeModelServer) -> None:
    _, _, rows, _ = await run(base)
    assert rows["moderation"][0] == "ok"
    assert len(model_server.moderation_requests) == 1

    code, _, rows, _ = await run(replace(base, moderation=False))
    assert code == 0
    assert rows["moderation"] == ["skipped", "CHATBOTS_MODERATION=off"]
    assert len(model_server.moderation_requests) == 1


async def test_a_revoked_slack_token_fails_with_the_bot_token_hint(full: Config, slack: FakeSlack) -> None:
    slack.revoke_token(SLACK_BOT)
    code, _, rows, fixes = await run(full)

    assert code == 1
    assert rows["slack"] == ["FAIL", "SLACK_BOT_TOKEN was refused (token_revoked)"]
    assert "SLACK_BOT_TOKEN" in fix_for(fixes, "slack")
    assert rows["discord"][0] == "ok"


async def test_slack_app_token_that_is_not_an_app_token_fails(full: Config) -> None:
    code, _, rows, fixes = await run(replace(full, slack_app_token="xoxb-doctor-secret-bot"))

    assert code == 1
    assert "SLACK_APP_TOKEN was refused (not_allowed_token_type)" in rows["slack"][1]
    assert "xapp-" in fix_for(fixes, "slack")


async def test_slack_http_mode_needs_the_signing_secret(full: Config) -> None:
    code, _, rows, fixes = await run(replace(full, slack_app_token=None))
    assert code == 1
    assert "HTTP mode: SLACK_SIGNING_SECRET not set" in rows["slack"][1]
    assert "SLACK_SIGNING_SECRET" in fix_for(fixes, "slack")

    code, _, rows, _ = await run(replace(full, slack_app_token=None, slack_signing_secret=SIGNING))
    assert code == 0
    assert rows["slack"][1].endswith("HTTP mode (signing secret set)")


async def test_missing_slack_scopes_are_named_with_how_to_add_them(full: Config) -> None:
    async with FakeSlack(scopes="chat:write,app_mentions:read") as narrow:
        code, _, rows, fixes = await run(replace(full, slack_api_url=narrow.api_url))

    assert code == 1
    assert "missing scopes assistant:write, channels:history" in rows["slack"][1]
    assert "reinstall" in fix_for(fixes, "slack")


async def test_a_slack_token_without_files_read_is_named_with_what_it_costs(full: Config) -> None:
    granted = ",".join(sorted(SLACK_BOT_SCOPES - {"files:read"}))
    async with FakeSlack(scopes=granted) as narrow:
        code, _, rows, fixes = await run(replace(full, slack_api_url=narrow.api_url))

    assert code == 1
    assert "missing scopes files:read (without files:read, files people share cannot be read)" in rows["slack"][1]
    assert "add the bot scopes files:read" in fix_for(fixes, "slack") and "reinstall" in fix_for(fixes, "slack")


async def test_a_slack_token_without_the_ai_app_scopes_is_named_with_what_they_cost(full: Config) -> None:
    granted = ",".join(sorted(SLACK_BOT_SCOPES - {"assistant:write", "channels:read"}))
    async with FakeSlack(scopes=granted) as narrow:
        code, _, rows, fixes = await run(replace(full, slack_api_url=narrow.api_url))

    assert code == 1
    assert "missing scopes assistant:write, channels:read" in rows["slack"][1]
    assert "without assistant:write, the assistant panel gets no suggested prompts" in rows["slack"][1]
    assert "without channels:read, the assistant panel cannot tell whether it may read the channel" in rows["slack"][1]
    assert "add the bot scopes assistant:write, channels:read" in fix_for(fixes, "slack")


def test_both_manifests_declare_the_ai_app_surfaces() -> None:
    for manifest in MANIFESTS.glob("*.json"):
        found = json.loads(manifest.read_text())
        features, settings = found["features"], found["settings"]
        assert features["assistant_view"]["assistant_description"]
        assert 1 <= len(features["assistant_view"]["suggested_prompts"]) <= 4
        assert features["app_home"]["home_tab_enabled"] is True
        assert {(s["callback_id"], s["type"]) for s in features["shortcuts"]} == {
            ("summarize_thread", "message"), ("ask_about_message", "message")}
        assert settings["interactivity"]["is_enabled"] is True
        assert {"assistant_thread_started", "assistant_thread_context_changed", "app_home_opened"} <= set(
            settings["event_subscriptions"]["bot_events"])
        if settings["socket_mode_enabled"]:
            assert "request_url" not in settings["interactivity"], "Socket Mode delivers interactions over the socket"
        else:
            assert settings["interactivity"]["request_url"].endswith("/slack/events")


def test_the_scopes_checked_are_the_ones_the_manifests_ask_for() -> None:
    for manifest in MANIFESTS.glob("*.json"):
        assert set(json.loads(manifest.read_text())["oauth_config"]["scopes"]["bot"]) == SLACK_BOT_SCOPES


async def test_a_wrong_discord_token_fails_with_the_token_hint(full: Config) -> None:
    code, _, rows, fixes = await run(replace(full, discord_bot_token="doctor.discord.wrong-token"))

    assert code == 1
    assert rows["discord"] == ["FAIL", "DISCORD_BOT_TOKEN was refused (401 Unauthorized)"]
    assert "DISCORD_BOT_TOKEN" in fix_for(fixes, "discord")
    assert rows["slack"][0] == "ok"


async def test_discord_without_the_message_content_intent_fails(full: Config, discord_fake: FakeDiscord) -> None:
    discord_fake.refuse_privileged = True
    code, _, rows, fixes = await run(full)

    assert code == 1
    assert "message content intent is off" in rows["discord"][1]
    assert "MESSAGE CONTENT INTENT" in fix_for(fixes, "discord")
    assert not discord_fake.connections  # the gateway was never opened


async def test_unreachable_discord_api_points_at_discord_api_url(full: Config) -> None:
    code, _, rows, fixes = await run(replace(full, discord_api_url="http://127.0.0.1:9/api/v10"))

    assert code == 1
    assert rows["discord"][0] == "FAIL" and "cannot reach the Discord API" in rows["discord"][1]
    assert "DISCORD_API_URL" in fix_for(fixes, "discord")


@pytest.mark.sqlite_only
async def test_a_database_path_that_is_a_directory_fails_naming_chatbots_db(base: Config, tmp_path: Path) -> None:
    code, _, rows, fixes = await run(replace(base, db_path=str(tmp_path)))

    assert code == 1
    assert rows["database"] == ["FAIL", f"{tmp_path} is a directory"]
    assert "CHATBOTS_DB" in fix_for(fixes, "database")


@pytest.mark.sqlite_only
async def test_a_database_in_a_missing_folder_fails_naming_chatbots_db(base: Config, tmp_path: Path) -> None:
    code, _, rows, fixes = await run(replace(base, db_path=str(tmp_path / "nowhere" / "chatbots.db")))

    assert code == 1
    assert rows["database"][0] == "FAIL"
    assert "does not exist" in fix_for(fixes, "database") and "CHATBOTS_DB" in fix_for(fixes, "database")


@pytest.mark.sqlite_only
async def test_a_database_another_process_keeps_locked_fails(base: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    await run(base)  # create and migrate it
    monkeypatch.setattr("chatbots.checks.DB_BUSY_TIMEOUT", 0.05)
    other = sqlite3.connect(base.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        code, _, rows, fixes = await run(base)
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert code == 1
    assert rows["database"][0] == "FAIL" and "locked" in rows["database"][1]
    assert "one bot process per file" in fix_for(fixes, "database")


async def test_the_write_probe_leaves_no_trace(base: Config) -> None:
    await run(base)
    store = open_store(base)
    try:
        assert value(store, "SELECT count(*) FROM workspaces") == 0
    finally:
        store.close()


async def test_a_server_that_never_answers_fails_at_the_deadline(base: Config) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1/models", hang)
    app.router.add_post("/v1/moderations", hang)
    async with serve(app) as url:
        code, _, rows, fixes = await run(replace(base, openai_base_url=url + "/v1"), timeout=0.3)
        never.set()

    assert code == 1
    assert rows["model server"] == ["FAIL", "no answer within 0.3 s"]
    assert rows["moderation"] == ["FAIL", "no answer within 0.3 s"]
    assert "OPENAI_BASE_URL" in fix_for(fixes, "model server")


async def test_credentials_in_urls_are_not_printed(base: Config, model_server: FakeModelServer) -> None:
    url = model_server.base_url.replace("http://", "http://user:url-password@")
    _, text, rows, _ = await run(replace(base, openai_api_key=None, openai_base_url=url, moderation=False))

    assert "url-password" not in text
    assert rows["model server"] == ["ok", f"{model_server.base_url}: 2 models, gpt-4o-mini among them"]
