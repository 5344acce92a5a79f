"""Cost and access commands end to end on Slack and Discord: who may change them, what members see, the private
note in a channel switched off, budget alerts posted through each platform, and Discord roles in allow-lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from chatbots.access import CHANNEL_OFF_NOTE
from chatbots.commands import Caller, Commands
from chatbots.config import Config
from chatbots.types import ConversationKey
from tests.discord_rig import ALICE, BOB, GENERAL, GUILD, RANDOM, DiscordRig, discord_rig
from tests.fakes.discord import Perm
from tests.slack_rig import SlackRig, slack_rig
from tests.test_slack_oauth import oauth_rig
from tests.test_discord_admin import slash

PRICY = "gpt-4o-mini=100/1000"
"""Output costs ten times input here, so answers, not long prompt bounds, decide what a budget holds."""
CHANGES = ["budget workspace month 20", "budget user day 1.25", "fallback gpt-4o", "alerts here",
           "model channel set gpt-4o", "channels only", "dms off", "users only <@U1>", "channel on"]


@pytest.fixture(params=["http", "socket"])
async def slack(request: pytest.FixtureRequest, settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(replace(settings, prices=PRICY, max_output_tokens=150), request.param) as rig:
        rig.slack.add_user("UADMIN", name="boss", is_admin=True)
        rig.slack.add_user("U1", name="ada")
        yield rig


async def test_slack_members_read_and_admins_change_every_governance_setting(slack: SlackRig) -> None:
    for command in CHANGES:
        assert "Only workspace admins" in await slack.command(command, user="U1"), command
    assert not await slack.bot.engine.store.audit_log()
    assert "no budget" in await slack.command("budget", user="U1")
    for command in CHANGES:
        assert "Only workspace admins" not in await slack.command(command, user="UADMIN"), command
    audit = await slack.bot.engine.store.audit_log()
    assert len(audit) == len(CHANGES) and {row["actor_id"] for row in audit} == {"UADMIN"}
    why = await slack.command("why", user="U1")
    assert "Model: `gpt-4o` (set for this channel)." in why and "only certain people may use me" in why
    assert "$20.00 a month" in await slack.command("limits", user="U1")


async def test_a_mention_in_a_slack_channel_switched_off_gets_one_ephemeral_note(slack: SlackRig) -> None:
    await slack.command("channel off", user="UADMIN", channel="C9")
    for _ in range(2):
        await slack.mention("anyone there?", channel="C9")
    outcomes = await slack.wait_outcomes(3)  # the command and two refused turns
    assert outcomes.count("turn:refused") == 2
    assert [(e["channel"], e["user"], e["text"]) for e in slack.slack.ephemerals] == [("C9", "U1", CHANNEL_OFF_NOTE)]
    assert not slack.slack.messages("C9") and not slack.model.requests


async def test_slack_budget_alerts_are_posted_in_the_channel_chosen(slack: SlackRig) -> None:
    slack.model.answer_tokens = 5000
    await slack.command("alerts here", user="UADMIN", channel="CADMIN")
    await slack.command("budget workspace day 0.2", user="UADMIN")  # one answer of ~150 tokens is past half of it
    await slack.reply_in("C1", await slack.mention("spend something"))

    def alerted() -> list | None:
        found = [m for m in slack.slack.messages("CADMIN") if "Heads-up" in m.text]
        return found or None

    [alert] = await slack.slack.wait_for(alerted, message="an alert in CADMIN")
    assert "reached 50 %" in alert.text and "daily budget of $0.20" in alert.text


@pytest.fixture
async def discord(settings: Config) -> AsyncIterator[DiscordRig]:
    async with discord_rig(replace(settings, prices=PRICY, max_output_tokens=150)) as rig:
        await rig.fake.wait_for(lambda: rig.fake.commands(), timeout=5)
        yield rig


async def test_discord_members_read_and_server_admins_change_governance_settings(discord: DiscordRig) -> None:
    changes = [("budget", {"scope": "workspace month", "usd": "12.5"}), ("fallback", {"model": "gpt-4o"}),
               ("alerts", {"where": "here"}), ("model", {"name": "gpt-4o", "scope": "channel"}),
               ("channels", {"mode": "only"}), ("channel", {"state": "on"}), ("users", {"mode": "only", "people": "<@42>"})]
    for command, options in changes:
        assert "Only workspace admins" in await slash(discord, command, user=BOB, **options), command
    assert not await discord.bot.engine.store.audit_log()
    for command, options in changes:
        assert "Only workspace admins" not in await slash(discord, command, user=BOB, admin=True, **options), command
    settings = {(row["setting"], row["channel"], row["new_value"]) for row in await discord.bot.engine.store.audit_log()}
    assert ("budget_workspace_month", "", "12.5") in settings and ("model", str(GENERAL), "gpt-4o") in settings
    assert ("users", "", f"42 {BOB}") in settings and ("alerts_channel", "", str(GENERAL)) in settings
    assert "$12.50" in await slash(discord, "budget")
    why = await slash(discord, "why")
    assert "Model: `gpt-4o` (set for this channel)." in why
    assert "only the bot's operators" in await slash(discord, "dms", admin=True, state="off")
    await discord.ask("hello")
    assert discord.model.requests[-1]["model"] == "gpt-4o"


async def test_on_discord_a_channel_switched_off_is_silent_and_a_role_may_be_allowed(discord: DiscordRig) -> None:
    discord.fake.add_role(GUILD, 300, int(Perm.DEFAULT_EVERYONE), name="askers")
    discord.fake.add_member(GUILD, 44, "carol", roles=[300])
    await slash(discord, "channel", admin=True, channel=RANDOM, state="off")
    await discord.mention("hello?", channel=RANDOM)
    assert await discord.next_outcome() == "turn:refused"
    posted = [m for m in discord.fake.bot_messages(RANDOM) if m["type"] != 20]  # 20: the command's own answer
    assert not posted and not discord.model.requests

    await slash(discord, "users", user=BOB, admin=True, mode="only", people="<@&300>")  # Bob keeps himself in
    await discord.mention("may I?", user=ALICE)
    assert await discord.next_outcome() == "turn:refused"
    await discord.ask("and me?", user=44)
    assert len(discord.model.requests) == 1


async def test_discord_budget_alerts_are_posted_in_the_channel_chosen(discord: DiscordRig) -> None:
    discord.model.answer_tokens = 5000
    await slash(discord, "alerts", admin=True, channel=RANDOM, where="here")
    await slash(discord, "budget", admin=True, scope="workspace day", usd="0.2")
    await discord.ask("spend something")

    def alerted() -> list | None:
        found = [m for m in discord.fake.bot_contents(RANDOM) if "Heads-up" in m]
        return found or None

    [alert] = await discord.fake.wait_for(alerted, timeout=5)
    assert "reached 50 %" in alert and "daily budget of $0.20" in alert


async def test_in_slack_oauth_mode_an_alert_goes_out_with_that_workspaces_token(settings: Config) -> None:
    async with oauth_rig(replace(settings, prices=PRICY, max_output_tokens=150)) as rig:
        acme = rig.slack.add_workspace("TACME", "Acme")
        await rig.install(acme)
        [token] = rig.slack.tokens_for(acme)
        commands = Commands.for_engine(rig.bot.engine)
        for command in ("alerts here", "budget workspace day 0.2"):
            await commands.run(Caller(ConversationKey("slack", "TACME", "CADMIN", "CADMIN"), "UADMIN", True), command)
        rig.model.answer_tokens = 5000
        await rig.answered_in("C1", await rig.mention(acme))

        def alerted() -> list | None:
            return [call for call in rig.slack.calls_to("chat.postMessage") if call.args.get("channel") == "CADMIN"] or None

        [alert] = await rig.slack.wait_for(alerted, message="an alert in CADMIN")
        assert alert.token == token and "reached 50 %" in str(alert.args.get("text"))


@pytest.mark.parametrize("install", ["workspace of an org", "org-wide"])
async def test_in_an_enterprise_grid_workspace_an_alert_goes_out_with_the_installations_token(
        settings: Config, install: str) -> None:
    async with oauth_rig(replace(settings, prices=PRICY, max_output_tokens=150)) as rig:
        place = (rig.slack.add_workspace("TW1", "Sales", enterprise_id="EORG", enterprise_name="Big Org")
                 if install == "workspace of an org" else rig.slack.add_org("EORG", "Big Org"))
        await rig.install(place)
        [token] = rig.slack.tokens_for(place)
        commands = Commands.for_engine(rig.bot.engine)
        for command in ("alerts here", "budget workspace day 0.2"):
            await commands.run(Caller(ConversationKey("slack", "TW1", "CADMIN", "CADMIN"), "UADMIN", True), command)
        rig.model.answer_tokens = 5000
        await rig.answered_in("C1", await rig.mention(place, team="TW1"))

        def alerted() -> list | None:
            return [call for call in rig.slack.calls_to("chat.postMessage") if call.args.get("channel") == "CADMIN"] or None

        [alert] = await rig.slack.wait_for(alerted, message="an alert in CADMIN")
        assert alert.token == token and "reached 50 %" in str(alert.args.get("text"))
