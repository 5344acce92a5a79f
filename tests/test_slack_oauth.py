"""OAuth mode end to end in HTTP mode: the real Bolt flow and bot against the fake Slack's authorize page and API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.doctor import doctor
from adapters.slack.checks import SLACK_BOT_SCOPES
from adapters.runner import Bot
from adapters.slack.oauth import StoreStates, oauth_flow
from adapters.slack import SlackService
from chatbots.cli import main
from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import OpenAIChat
from chatbots.installations import Installations, InstalledApp
from chatbots.logs import QUIET_LIBRARIES, configure_logging
from chatbots.store import Store
from chatbots.types import ConversationKey
from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import (
    BrowserInstall,
    FakeSlack,
    Workspace,
    app_home_opened,
    app_mention,
    app_uninstalled,
    event_callback,
    feedback_click,
    next_ts,
    post_signed,
    slash_command_form,
    tokens_revoked,
)
from tests.fakes.slack.oauth import CLIENT_ID, CLIENT_SECRET
from tests.outcomes import Outcomes
from tests.processes import free_port

SECRET = "oauth-signing-secret"


@dataclass
class OAuthRig:
    slack: FakeSlack
    model: FakeModelServer
    bot: Bot
    outcomes: Outcomes
    turns: Outcomes
    answered: int = 0
    """Answers waited for so far: each one's turn outcome is recorded before answered_in returns."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}"

    @property
    def service(self) -> SlackService:
        return next(s for s in self.bot.services if isinstance(s, SlackService))

    async def install(self, place: Workspace, **options: Any) -> BrowserInstall:
        return await self.slack.install_in_browser(f"{self.base}/slack/install", place, **options)

    async def deliver(self, event: dict[str, Any], team: str, *, enterprise_id: str | None = None,
                      org_wide: bool = False, bot_user_id: str = "UBOT") -> None:
        body = event_callback(team, event, enterprise_id=enterprise_id, is_enterprise_install=org_wide,
                              bot_user_id=bot_user_id)
        status, text = await post_signed(None, f"{self.base}/slack/events", body, SECRET)
        assert status == 200, (status, text)

    async def mention(self, place: Workspace, team: str | None = None, channel: str = "C1", **fields: Any) -> str:
        ts = next_ts()
        team = team or place.team_id or ""
        await self.deliver(app_mention(channel, "U1", f"<@{place.bot_user_id}> hello", ts=ts, team=team, **fields), team,
                           enterprise_id=place.enterprise_id, org_wide=place.org_wide, bot_user_id=place.bot_user_id)
        return ts

    async def answered_in(self, channel: str, ts: str) -> list[str]:
        """The tokens the bot's calls in that thread were made with, once it has answered there."""
        await self.slack.wait_for(lambda: [m for m in self.slack.messages(channel) if m.thread_ts == ts] or None,
                                  message=f"an answer in {channel}/{ts}")
        self.answered += 1
        await self.turns.wait(self.answered)
        return [call.token or "" for call in self.slack.calls
                if call.method in ("chat.postMessage", "chat.startStream") and call.args.get("thread_ts") == ts]


@asynccontextmanager
async def oauth_rig(settings: Config, *, busy_timeout: float | None = None, **overrides: Any) -> AsyncIterator[OAuthRig]:
    async with FakeSlack() as slack, FakeModelServer() as model:
        configured = replace(settings, openai_base_url=model.base_url, slack_bot_token=None,
                             slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
                             slack_signing_secret=SECRET, slack_api_url=slack.api_url, **{"port": 0, **overrides})
        engine = None
        if busy_timeout is not None:  # SQLite: how long a locked database is waited for
            engine = Engine(Store.open(configured.db_path, busy_timeout=busy_timeout),
                            OpenAIChat.from_settings(configured), configured)
        bot = Bot(configured, engine)
        turns = Outcomes(keep=lambda outcome: outcome.startswith("turn"))
        outcomes = Outcomes(keep=lambda outcome: outcome.startswith("turn") or outcome in ("ignored", "workspace_deleted"))
        for service in bot.services:
            service.observers.append(lambda outcome: outcomes.record(outcome.kind))
            service.observers.append(lambda outcome: turns.record(outcome.kind))
        await bot.start(host="127.0.0.1")
        slack.redirect_url = f"http://127.0.0.1:{bot.port}/slack/oauth_redirect"
        try:
            yield OAuthRig(slack, model, bot, outcomes, turns)
        finally:
            await bot.stop(grace=2)


async def test_two_workspaces_install_and_each_is_answered_with_its_own_token(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        beta = rig.slack.add_workspace("TBETA", "Beta")
        first = await rig.install(acme, installer="UALICE")
        assert first.status == 200 and "Installed" in first.page and "Acme" in first.page
        assert "Add to Slack" in first.install_page
        assert (await rig.install(beta)).status == 200
        [acme_token], [beta_token] = rig.slack.tokens_for(acme), rig.slack.tokens_for(beta)

        a = await rig.mention(acme, channel="CA")
        b = await rig.mention(beta, channel="CB")
        assert set(await rig.answered_in("CA", a)) == {acme_token}
        assert set(await rig.answered_in("CB", b)) == {beta_token}
        # Bolt checked each workspace's own token before answering, and asked for the manifests' scopes
        assert {call.token for call in rig.slack.calls_to("auth.test")} >= {acme_token, beta_token}
        scopes = set(rig.slack.authorize_requests[0]["scope"].split(","))
        assert {"app_mentions:read", "chat:write", "files:read", "commands"} <= scopes

        stored = await rig.bot.engine.store.find_installation("", "TACME")
        assert stored is not None and stored.bot_token == acme_token and stored.installer_id == "UALICE"
        assert stored.bot_user_id == acme.bot_user_id and stored.team_name == "Acme"


async def test_a_command_in_an_installed_workspace_uses_that_workspaces_token(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        await rig.install(acme)
        form = slash_command_form("TACME", "U1", "C1", "help")
        status, body = await post_signed(None, f"{rig.base}/slack/events", form, SECRET, json_body=False)
        assert status == 200 and "ephemeral" in body
        [token] = rig.slack.tokens_for(acme)
        assert [call.token for call in rig.slack.calls_to("users.info")] == [token]


async def test_files_are_downloaded_with_the_token_of_the_workspace_that_shared_them(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        beta = rig.slack.add_workspace("TBETA", "Beta")
        await rig.install(acme)
        await rig.install(beta)
        for place, channel in ((acme, "CA"), (beta, "CB")):
            shared = rig.slack.add_file(f"{place.name}.txt", b"notes", "text/plain")
            await rig.answered_in(channel, await rig.mention(place, channel=channel, files=[shared]))
        used = {request.path.rsplit("/", 1)[-1]: request.authorization for request in rig.slack.file_downloads}
        [acme_token], [beta_token] = rig.slack.tokens_for(acme), rig.slack.tokens_for(beta)
        assert used == {"Acme.txt": f"Bearer {acme_token}", "Beta.txt": f"Bearer {beta_token}"}


async def test_the_ai_surfaces_use_the_token_of_the_workspace_they_serve(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        beta = rig.slack.add_workspace("TBETA", "Beta")
        await rig.install(acme)
        await rig.install(beta)
        ts = await rig.mention(beta, channel="CB")
        await rig.answered_in("CB", ts)
        answer = next(m for m in rig.slack.messages("CB") if m.thread_ts == ts)
        await rig.deliver(app_home_opened("U1"), "TACME", bot_user_id=acme.bot_user_id)
        form = {"payload": json.dumps(feedback_click("U2", "CB", answer.ts, "positive", thread_ts=ts, team="TBETA"))}
        status, _ = await post_signed(None, f"{rig.base}/slack/events", form, SECRET, json_body=False)
        assert status == 200
        await rig.slack.wait_for_call("views.publish")
        await rig.slack.wait_for_call("chat.postEphemeral")
        [acme_token], [beta_token] = rig.slack.tokens_for(acme), rig.slack.tokens_for(beta)
        assert [call.token for call in rig.slack.calls_to("views.publish")] == [acme_token]
        assert [call.token for call in rig.slack.calls_to("chat.postEphemeral")] == [beta_token]


async def test_a_refused_code_exchange_names_the_settings_and_logs_no_code(
    settings: Config, caplog: pytest.LogCaptureFixture
) -> None:
    async with oauth_rig(settings) as rig:
        rig.slack.client_secret = "the secret Slack really has"
        acme = rig.slack.add_workspace("TACME", "Acme")
        with caplog.at_level(logging.INFO):
            failed = await rig.install(acme)
        assert failed.status == 400 and "Installation failed" in failed.page
        code = re.search(r"code=([^&]+)", failed.back).group(1)  # type: ignore[union-attr]
        logged = [record.getMessage() for record in caplog.records if "oauth" in record.name]
        assert "slack: oauth.v2.access refused an install (bad_client_secret): check SLACK_CLIENT_ID, " \
               "SLACK_CLIENT_SECRET and SLACK_REDIRECT_URI" in logged
        assert not any(code in line for line in logged)
        assert await rig.bot.engine.store.installations() == []


@pytest.mark.sqlite_only  # another process's write lock on the SQLite file
async def test_an_install_while_the_database_is_locked_gets_a_page_saying_to_try_again(settings: Config) -> None:
    async with oauth_rig(replace(settings, database_url=None), busy_timeout=0.05) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        other = sqlite3.connect(settings.db_path)
        other.execute("BEGIN EXCLUSIVE")
        try:
            async with aiohttp.ClientSession() as browser:
                async with browser.get(f"{rig.base}/slack/install") as response:
                    assert response.status == 503
                    assert "could not reach its database" in await response.text()
        finally:
            other.rollback()
            other.close()
        assert (await rig.install(acme)).status == 200


async def test_the_scopes_and_redirect_url_settings_reach_slack(settings: Config) -> None:
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/slack/oauth_redirect"
    async with oauth_rig(settings, port=port, slack_scopes=("chat:write", "commands"), slack_redirect_uri=redirect) as rig:
        rig.slack.redirect_url = None  # only the redirect_uri the bot sends can bring the browser back
        acme = rig.slack.add_workspace("TACME", "Acme")
        assert (await rig.install(acme)).status == 200
        [asked] = rig.slack.authorize_requests
        assert asked["scope"] == "chat:write,commands" and asked["redirect_uri"] == redirect
        [exchange] = rig.slack.calls_to("oauth.v2.access")
        assert exchange.args["redirect_uri"] == redirect


async def test_a_cancelled_install_says_so_and_stores_nothing(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        cancelled = await rig.install(acme, approve=False)
        assert cancelled.status == 200 and "Installation cancelled" in cancelled.page
        assert not rig.slack.calls_to("oauth.v2.access")
        assert await rig.bot.engine.store.installations() == []


@pytest.mark.parametrize("tamper", ["no cookie", "forged state", "state used twice"])
async def test_a_bad_or_reused_state_is_refused_with_a_clear_page(settings: Config, tamper: str) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        if tamper == "state used twice":  # the whole redirect replayed, cookie and all
            first = await rig.install(acme)
            async with aiohttp.ClientSession() as browser:
                async with browser.get(first.back, headers=first.headers) as response:
                    refused = BrowserInstall("", response.status, await response.text(), first.back, first.headers)
        elif tamper == "no cookie":
            refused = await rig.install(acme, cookie=False)
        else:
            refused = await rig.install(acme, state="forged.0000")
        assert refused.status == 400 and "This install link has expired" in refused.page
        assert len(rig.slack.calls_to("oauth.v2.access")) == (1 if tamper == "state used twice" else 0)


async def test_an_expired_state_is_refused(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        states = rig.service.app.oauth_flow.settings.state_store  # type: ignore[union-attr]
        states.seconds = -1  # issued already expired, as one ten minutes old would be
        acme = rig.slack.add_workspace("TACME", "Acme")
        refused = await rig.install(acme)
        assert refused.status == 400 and "expired" in refused.page
        assert not rig.slack.calls_to("oauth.v2.access")


async def test_an_org_wide_install_answers_in_every_workspace_of_the_org_with_settings_apart(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        org = rig.slack.add_org("EORG", "Big Org")
        first = await rig.install(org)
        assert first.status == 200 and "every workspace of" in first.page and "Big Org" in first.page
        [token] = rig.slack.tokens_for(org)
        stored = await rig.bot.engine.store.find_installation("EORG", "")
        assert stored is not None and stored.is_enterprise_install

        one = await rig.mention(org, team="TW1", channel="C1")
        two = await rig.mention(org, team="TW2", channel="C2")
        assert set(await rig.answered_in("C1", one)) == {token}
        assert set(await rig.answered_in("C2", two)) == {token}
        store = rig.bot.engine.store
        w1, w2 = await store.workspace_id("slack", "TW1"), await store.workspace_id("slack", "TW2")
        assert w1 != w2  # each workspace of the org keeps its own settings, caps and history
        await store.set_setting(w1, "model", "gpt-4o")
        assert "model" in await store.settings_for(ConversationKey("slack", "TW1", "C1", one))
        assert "model" not in await store.settings_for(ConversationKey("slack", "TW2", "C2", two))

        # removed from one workspace of the org: that workspace's data goes, the install and the other stay
        kept = len(rig.outcomes)
        await rig.deliver({"type": "team_access_revoked", "team_ids": ["TW1"]}, "TW1", enterprise_id="EORG",
                          org_wide=True, bot_user_id=org.bot_user_id)
        await rig.outcomes.wait(kept + 1)
        assert rig.outcomes[-1] == "workspace_deleted"
        assert not await store.has_conversation(ConversationKey("slack", "TW1", "C1", one))
        assert await store.has_conversation(ConversationKey("slack", "TW2", "C2", two))
        assert await store.find_installation("EORG", "") is not None


async def test_rotating_tokens_are_refreshed_before_they_expire_and_the_new_one_answers(settings: Config) -> None:
    async with oauth_rig(settings) as rig:
        rig.slack.token_rotation = True
        acme = rig.slack.add_workspace("TACME", "Acme")
        await rig.install(acme)
        [first] = rig.slack.tokens_for(acme)
        stored = await rig.bot.engine.store.find_installation("", "TACME")
        assert stored is not None and stored.bot_refresh_token and stored.bot_token_expires_at
        assert stored.bot_token_expires_at > time.time() + 3 * 3600  # fresh: 12 hours
        assert set(await rig.answered_in("C1", await rig.mention(acme))) == {first}
        assert len(rig.slack.calls_to("oauth.v2.access")) == 1, "a fresh token is not refreshed"

        # an hour left: inside the two hours before expiry, so the next request refreshes it first
        rig.slack.expire(first, in_seconds=3600)
        await rig.bot.engine.store.save_installation(replace(stored, bot_token_expires_at=int(time.time()) + 3600))
        ts = await rig.mention(acme)
        tokens = set(await rig.answered_in("C1", ts))
        refreshed = await rig.bot.engine.store.find_installation("", "TACME")
        assert refreshed is not None and refreshed.bot_token != first and tokens == {refreshed.bot_token}
        assert refreshed.bot_refresh_token != stored.bot_refresh_token
        [refresh] = [call for call in rig.slack.calls_to("oauth.v2.access") if call.args.get("grant_type")]
        assert refresh.args["refresh_token"] == stored.bot_refresh_token


async def test_uninstalling_deletes_the_installation_and_erases_the_workspace(settings: Config, caplog: pytest.LogCaptureFixture) -> None:
    async with oauth_rig(settings) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        beta = rig.slack.add_workspace("TBETA", "Beta")
        await rig.install(acme)
        await rig.install(beta)
        ts = await rig.mention(acme)
        await rig.answered_in("C1", ts)
        store = rig.bot.engine.store
        conversation = ConversationKey("slack", "TACME", "C1", ts)
        assert await store.has_conversation(conversation)

        [token] = rig.slack.tokens_for(acme)
        rig.slack.revoke_token(token)
        await rig.deliver(app_uninstalled(), "TACME")
        await rig.outcomes.wait(2)
        assert rig.outcomes[-1] == "workspace_deleted"
        assert await store.find_installation("", "TACME") is None
        assert not await store.has_conversation(conversation)
        assert await store.find_installation("", "TBETA") is not None

        # a tokens_revoked for another bot user leaves the other workspace alone; its own bot user removes it
        await rig.deliver(tokens_revoked(["USOMEONE"]), "TBETA")
        await rig.outcomes.wait(3)
        assert await store.find_installation("", "TBETA") is not None
        await rig.deliver(tokens_revoked([beta.bot_user_id]), "TBETA")
        await rig.outcomes.wait(4)
        assert await store.find_installation("", "TBETA") is None

        # later events from the uninstalled workspace are acknowledged and ignored, with one log line
        caplog.clear()
        with caplog.at_level(logging.INFO):
            before = len(rig.slack.calls)
            await rig.mention(acme)
            await rig.outcomes.wait(5)
        assert rig.outcomes[-1] == "ignored"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            "slack: a request from a workspace without an installation was acknowledged and ignored "
            "(team TACME, enterprise None)"]
        assert not [c for c in rig.slack.calls[before:] if c.method == "chat.postMessage"]


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """The process's own logging at CHATBOTS_LOG_LEVEL=DEBUG, restored afterwards."""
    names = ["", *QUIET_LIBRARIES]
    levels = {name: logging.getLogger(name).level for name in names}
    configure_logging("DEBUG")
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


async def test_no_token_reaches_a_log_or_the_installations_listing(
    settings: Config, caplog: pytest.LogCaptureFixture, debug_logging: None
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with oauth_rig(settings) as rig:
            rig.slack.token_rotation = True
            acme = rig.slack.add_workspace("TACME", "Acme")
            await rig.install(acme)
            await rig.answered_in("C1", await rig.mention(acme))
            listing = await rig.bot.engine.store.installations()
            metrics = rig.bot.engine.metrics.exposition().decode()
            tokens = [issued.token for issued in rig.slack.tokens.values()]
            tokens += [issued.refresh_token or "" for issued in rig.slack.tokens.values()]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for token in filter(None, tokens):
        assert token not in logged
        assert token not in repr(listing)
        assert token not in metrics


def test_oauth_mode_needs_both_client_credentials() -> None:
    from chatbots.config import ConfigError

    with pytest.raises(ConfigError, match="SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together"):
        Config.from_env({"SLACK_CLIENT_ID": "1.2"})
    oauth = Config.from_env({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_SCOPES": "chat:write, commands"})
    assert oauth.slack_oauth and oauth.slack_scopes == ("chat:write", "commands")
    assert not Config.from_env({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_BOT_TOKEN": "xoxb-1"}).slack_oauth


def test_the_installations_command_lists_workspaces_and_orgs_never_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CHATBOTS_", "SLACK_", "DISCORD_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATBOTS_DB", str(tmp_path / "bot.db"))
    monkeypatch.chdir(tmp_path)
    assert main(["installations"]) == 0
    assert "No Slack installations yet" in capsys.readouterr().out

    store = Store.open(tmp_path / "bot.db")
    try:
        asyncio.run(store.save_installation(InstalledApp("", "TACME", False, "xoxb-acme-secret", "UBOTA",
                                                         team_name="Acme", installer_id="UALICE")))
        asyncio.run(store.save_installation(InstalledApp("EORG", "", True, "xoxb-org-secret", "UBOTE",
                                                         enterprise_name="Big Org", installer_id="UBOB",
                                                         bot_refresh_token="xoxe-1-refresh-secret")))
    finally:
        store.close()
    assert main(["installations"]) == 0
    out = capsys.readouterr().out
    acme = next(line for line in out.splitlines() if "TACME" in line)
    org = next(line for line in out.splitlines() if "(org-wide)" in line)
    assert "Acme" in acme and "UALICE" in acme and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", acme)
    assert "EORG" in org and "Big Org" in org and "UBOB" in org
    assert "secret" not in out


async def installed_directly(settings: Config, slack: FakeSlack, scopes: list[tuple[Any, str | None]]) -> Config:
    """Installations written straight into the bot's SQLite file (each place with its token's scopes, None: all),
    and OAuth-mode settings pointing at the fake Slack, as `chatbots doctor` would read them."""
    store = Store.open(settings.db_path)
    try:
        for place, granted in scopes:
            token = slack.issue_token(place, scopes=granted)
            await store.save_installation(InstalledApp("", place.team_id or "", False, token, place.bot_user_id,
                                                       team_name=place.name))
    finally:
        store.close()
    return replace(settings, database_url=None, slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
                   slack_signing_secret=SECRET, slack_api_url=slack.api_url)


async def test_doctor_checks_every_installations_token(settings: Config) -> None:
    async with FakeSlack() as slack:
        acme, beta = slack.add_workspace("TACME", "Acme"), slack.add_workspace("TBETA", "Beta")
        configured = await installed_directly(settings, slack, [(acme, None), (beta, None)])
        code, text = await doctor(configured)
        row = next(line for line in text.splitlines() if line.startswith("slack"))
        assert code == 0 and "OAuth mode, 2 installations, 2 tokens work" in row, text

        [revoked] = slack.tokens_for(beta)
        slack.revoke_token(revoked)
        code, text = await doctor(configured)
        assert code == 1
        assert "2 installations, 1 token works; refused: Beta (TBETA) token_revoked" in text
        assert "fix: slack: install the app again" in text
        assert {call.token for call in slack.calls_to("auth.test")} == set(slack.tokens_for(acme) + [revoked])
        assert "xoxb-" not in text and CLIENT_SECRET not in text


async def test_doctor_names_the_installations_that_lack_a_scope_the_features_need(settings: Config) -> None:
    async with FakeSlack() as slack:
        acme, beta = slack.add_workspace("TACME", "Acme"), slack.add_workspace("TBETA", "Beta")
        narrow = ",".join(sorted(SLACK_BOT_SCOPES - {"assistant:write", "files:read"}))
        configured = await installed_directly(settings, slack, [(acme, None), (beta, narrow)])
        code, text = await doctor(configured)
        assert code == 1 and "2 tokens work; missing scopes: Beta (TBETA) assistant:write, files:read" in text, text
        assert "Acme" not in text and "fix: slack: add the missing scopes" in text and "xoxb-" not in text


async def test_install_states_are_signed_so_a_new_state_secret_cancels_installs_in_progress(store: Store) -> None:
    before = StoreStates(Installations(store), "first secret")
    state = await before.async_issue()
    assert not await StoreStates(Installations(store), "second secret").async_consume(state)
    assert not await before.async_consume(state + "0")
    assert not await before.async_consume("x" * 10_000)
    assert await before.async_consume(state)


async def test_slack_state_secret_signs_install_states_alike_on_every_replica(store: Store) -> None:
    env = {"SLACK_CLIENT_ID": CLIENT_ID, "SLACK_CLIENT_SECRET": CLIENT_SECRET, "SLACK_SIGNING_SECRET": SECRET,
           "SLACK_STATE_SECRET": "a long random text shared by the replicas"}

    def states(environment: dict[str, str]) -> Any:
        return oauth_flow(Config.from_env(environment), Installations(store), AsyncWebClient()).settings.state_store

    one, other = states(env), states(env)
    assert await other.async_consume(await one.async_issue()), "a replica accepts the state another issued"
    rotated = states({**env, "SLACK_STATE_SECRET": "a new secret"})
    assert not await rotated.async_consume(await one.async_issue()), "a new secret cancels installs in progress"
    derived = states({k: v for k, v in env.items() if k != "SLACK_STATE_SECRET"})
    assert await states({k: v for k, v in env.items() if k != "SLACK_STATE_SECRET"}).async_consume(
        await derived.async_issue()), "unset, every replica derives the same secret from SLACK_CLIENT_SECRET"
    assert not await derived.async_consume(await one.async_issue())


def test_the_oauth_manifest_is_the_http_one_with_a_redirect_url_and_org_wide_installs() -> None:
    folder = Path(__file__).parents[1] / "adapters" / "slack" / "manifests"
    oauth, http = (json.loads((folder / name).read_text()) for name in ("oauth-mode.json", "http-mode.json"))
    assert oauth["oauth_config"].pop("redirect_urls") == ["https://YOUR-BOT-HOST/slack/oauth_redirect"]
    assert oauth["settings"].pop("org_deploy_enabled") is True
    oauth["settings"]["event_subscriptions"]["bot_events"].remove("team_access_revoked")
    http["settings"].pop("org_deploy_enabled")
    assert oauth == http


async def test_the_fake_rotates_tokens_once_per_refresh_token_and_expired_ones_are_refused() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(base_url=slack.api_url)
        refresh = slack.issue_config_refresh_token()
        rotated = await client.tooling_tokens_rotate(refresh_token=refresh)
        assert rotated["token"].startswith("xoxe.xoxp-") and rotated["refresh_token"] != refresh
        assert rotated["exp"] > rotated["iat"]
        with pytest.raises(SlackApiError, match="invalid_refresh_token"):
            await client.tooling_tokens_rotate(refresh_token=refresh)

        slack.token_rotation = True
        token = slack.issue_token(slack.add_workspace("TACME", "Acme"))
        assert (await client.auth_test(token=token))["team_id"] == "TACME"
        slack.expire(token)
        with pytest.raises(SlackApiError, match="token_expired"):
            await client.auth_test(token=token)
