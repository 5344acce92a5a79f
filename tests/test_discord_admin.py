"""`/chatbot` as Discord application commands, feedback reactions and server removal, through the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatbots.config import Config
from tests.backend import rows
from tests.discord_rig import (
    ALICE,
    BOB,
    GENERAL,
    GUILD,
    OTHER_GENERAL,
    OTHER_GUILD,
    DiscordRig,
    discord_rig,
)
from tests.fakes.discord import Perm

ADMIN_PERMISSIONS = Perm.DEFAULT_EVERYONE | Perm.MANAGE_GUILD


@pytest.fixture
async def rig(settings: Config) -> AsyncIterator[DiscordRig]:
    async with discord_rig(settings) as rig:
        await rig.fake.wait_for(lambda: rig.fake.commands(), timeout=5)
        yield rig


async def slash(rig: DiscordRig, command: str, *, user: int = ALICE, admin: bool = False,
                channel: int = GENERAL, **options: Any) -> str:
    """Run `/chatbot ...` as a member; returns the private answer."""
    payload = await rig.fake.send_interaction(
        f"chatbot {command}", channel_id=channel, user_id=user, options=options or None,
        permissions=ADMIN_PERMISSIONS if admin else Perm.DEFAULT_EVERYONE,
    )
    record = rig.fake.interaction(int(payload["id"]))

    def answered() -> str | None:
        if record.original_message_id is None or record.loading:
            return None
        message = rig.fake.get_message(record.original_message_id)
        parts = [message["content"]] + [rig.fake.get_message(m)["content"] for m in record.followup_message_ids]
        return "\n".join(parts)

    text = await rig.fake.wait_for(answered, timeout=5)
    assert record.ephemeral, "answers are private to the person who asked"
    return text


def settings_rows(rig: DiscordRig) -> list[tuple]:
    return rows(rig.bot.engine.store, "SELECT workspace_id, channel, name, value FROM settings ORDER BY 1, 2, 3")


async def test_the_chatbot_group_is_registered_with_typed_options(rig: DiscordRig) -> None:
    [group] = rig.fake.commands()
    assert group["name"] == "chatbot"
    subcommands = {option["name"]: option for option in group["options"]}
    assert set(subcommands) == {"help", "instructions", "model", "limit", "limits", "usage", "moderation", "forget",
                                "budget", "fallback", "alerts", "channel", "channels", "dms", "users", "why"}
    value = next(o for o in subcommands["limit"]["options"] if o["name"] == "value")
    assert value["type"] == 4 and value["min_value"] == 0, "limits are integers, checked by Discord itself"


async def test_members_without_manage_server_cannot_change_settings(rig: DiscordRig) -> None:
    before = settings_rows(rig)
    for command, options in [("limit", {"kind": "user", "value": 5}), ("model", {"name": "gpt-4o"}),
                          ("instructions", {"action": "set", "text": "Be rude."}), ("moderation", {"state": "off"})]:
        answer = await slash(rig, command, **options)
        assert "Only workspace admins" in answer
    assert settings_rows(rig) == before and not await rig.bot.engine.store.audit_log()
    assert "instructions set" not in await slash(rig, "help")


async def test_a_server_admin_sets_instructions_that_reach_the_model_in_that_server_only(rig: DiscordRig) -> None:
    answer = await slash(rig, "instructions", admin=True, action="set", text="Answer in haiku.")
    assert "updated" in answer
    [row] = await rig.bot.engine.store.audit_log()
    assert (row["workspace"], row["actor_id"], row["new_value"]) == (str(GUILD), str(ALICE), "Answer in haiku.")
    await rig.ask("hello")
    assert rig.model.requests[-1]["messages"][0]["content"] == "Answer in haiku."
    await rig.ask("hello there", channel=OTHER_GENERAL)
    assert "haiku" not in rig.model.requests[-1]["messages"][0]["content"]


async def test_channel_scope_and_limits_through_typed_options(rig: DiscordRig) -> None:
    await slash(rig, "instructions", admin=True, action="set", text="Talk about trains.", scope="channel")
    assert "Daily tokens per person: 2,000" in await slash(rig, "limit", admin=True, kind="user", value=2000)
    assert "2,000 tokens a day" in await slash(rig, "limits", user=BOB)
    rig.model.answer_tokens = 100_000  # the first answer talks until its limit: all the allowance it may have
    await rig.ask("first")
    await rig.mention("second")
    assert await rig.next_outcome() == "turn:refused"
    assert "daily allowance of 2,000 tokens" in rig.fake.bot_contents(GENERAL)[-1]
    assert rig.model.requests[-1]["messages"][0]["content"].endswith("Talk about trains.")


async def test_thumbs_on_replies_are_feedback_in_the_usage_report(rig: DiscordRig) -> None:
    await rig.ask("rate me")
    reply_id = int(rig.fake.bot_messages(GENERAL)[-1]["id"])
    await rig.fake.send_reaction_add(GENERAL, reply_id, ALICE, "👍")
    await rig.fake.send_reaction_add(GENERAL, reply_id, BOB, "👎")
    await rig.fake.send_reaction_add(GENERAL, reply_id, BOB, "🎉")
    votes = [o for o in await rig.wait_outcomes(4) if not o.startswith("turn:")]
    assert sorted(votes) == ["feedback", "feedback", "ignored"]
    report = await slash(rig, "usage", admin=True)
    assert "👍 1 · 👎 1 (50% positive)" in report and f"<@{ALICE}>" in report


async def test_removing_the_bot_from_a_server_erases_that_servers_data(rig: DiscordRig) -> None:
    await rig.ask("remember me")
    await rig.ask("and me", channel=OTHER_GENERAL)
    await slash(rig, "limit", admin=True, kind="user", value=1000)
    await rig.fake.send_guild_delete(GUILD)
    assert await rig.next_outcome() == "workspace_deleted"
    store = rig.bot.engine.store
    assert [r[0] for r in rows(store, "SELECT text FROM messages ORDER BY id")] == ["and me", "echo: and me"]
    assert not settings_rows(rig)
    assert rows(store, "SELECT external_id FROM workspaces WHERE platform = 'discord'") == [(str(OTHER_GUILD),)]
