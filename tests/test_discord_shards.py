"""Discord sharding: one process running the shards Discord recommends, or several processes splitting them.

Real discord.py (AutoShardedClient) against the fake Discord, which shards as Discord does: IDENTIFY carries
`shard: [id, count]`, each shard's READY lists its guilds only, a guild's events go to shard
`(guild_id >> 22) % count` only, and DMs to shard 0.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from adapters.discord.shards import IdentifyPacer, shard_of
from chatbots.config import Config, ConfigError
from tests.discord_rig import ALICE, discord_rig
from tests.fakes.discord import FakeDiscord
from tests.fakes.model_server import FakeModelServer
from tests.processes import bot_exit, bot_process, free_port

GUILD_ON_0 = 10 << 22
"""Snowflake-shaped guild ids: with two shards this one lives on shard 0..."""
GUILD_ON_1 = 11 << 22
"""...and this one on shard 1."""
CHANNEL_ON_0 = GUILD_ON_0 + 1
CHANNEL_ON_1 = GUILD_ON_1 + 1


def two_guilds(fake: FakeDiscord, *, recommended: int = 2) -> None:
    """A guild on each of two shards; Discord recommends `recommended` shards and lets two identify at once."""
    assert (shard_of(GUILD_ON_0, 2), shard_of(GUILD_ON_1, 2)) == (0, 1)
    fake.recommended_shards = recommended
    fake.max_concurrency = 2
    for guild, channel in ((GUILD_ON_0, CHANNEL_ON_0), (GUILD_ON_1, CHANNEL_ON_1)):
        fake.add_guild(guild, f"guild {guild}")
        fake.add_channel(guild, channel, "general")
        fake.add_member(guild, ALICE, "alice")


def messages_on(fake: FakeDiscord, shard: int, channel: int) -> list[str]:
    """Contents of the MESSAGE_CREATE dispatches in `channel` that went over `shard`'s connection."""
    return [data["content"] for event, data in fake.shard_events(shard)
            if event == "MESSAGE_CREATE" and data["channel_id"] == str(channel)]


def ready_guilds(fake: FakeDiscord, shard: int) -> list[int]:
    return [int(guild["id"]) for event, data in fake.shard_events(shard) if event == "READY" for guild in data["guilds"]]


async def test_without_shard_settings_one_process_runs_the_recommended_shards_and_answers_on_each(
        settings: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.discord")
    async with discord_rig(settings, world=two_guilds) as rig:
        fake = rig.fake
        await fake.wait_connected(shards=(0, 1))
        assert "running shards 0,1 of 2" in caplog.text
        assert fake.calls_matching("GET", "/gateway/bot"), "the shard count comes from Discord's recommendation"
        assert fake.identified_shards() == [[0, 2], [1, 2]]
        assert ready_guilds(fake, 0) == [GUILD_ON_0] and ready_guilds(fake, 1) == [GUILD_ON_1]

        assert await rig.ask("hello shard zero", channel=CHANNEL_ON_0) == ["echo: hello shard zero"]
        assert await rig.ask("hello shard one", channel=CHANNEL_ON_1) == ["echo: hello shard one"]
        dm = fake.dm_channel(ALICE)
        await fake.send_dm(ALICE, "hello in private")
        assert await rig.next_outcome() == "turn:answered"
        assert fake.bot_contents(dm) == ["echo: hello in private"]

        mention = f"<@{fake.bot_id}> hello shard one"
        assert mention in messages_on(fake, 1, CHANNEL_ON_1) and mention not in messages_on(fake, 0, CHANNEL_ON_1)
        assert messages_on(fake, 0, dm) == ["hello in private", "echo: hello in private"]
        assert messages_on(fake, 1, dm) == []


async def test_a_second_identify_in_one_bucket_waits_out_discords_window_and_other_buckets_do_not() -> None:
    pacer = IdentifyPacer(window=0.3)
    started = time.monotonic()
    await pacer.wait(0, concurrency=2)
    await pacer.wait(1, concurrency=2)  # bucket 1: its first identify
    assert time.monotonic() - started < 0.2
    await pacer.wait(2, concurrency=2)  # bucket 0 again
    assert time.monotonic() - started >= 0.3


def answered_workspaces(db: Path) -> set[str]:
    """Workspaces (guild ids, or "dm") with a conversation the process behind `db` stored."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT DISTINCT w.external_id FROM conversations c "
                                  "JOIN workspaces w ON w.id = c.workspace_id").fetchall()
    return {row[0] for row in rows}


@pytest.mark.sqlite_only  # a file per process shows which answered; sharing PostgreSQL: test_replica_processes.py
async def test_two_processes_split_the_shards_and_answer_each_message_exactly_once(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeModelServer() as model:
        two_guilds(fake, recommended=1)  # ignored: DISCORD_SHARD_COUNT decides
        env = {"DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": str(fake.gateway_url), "OPENAI_BASE_URL": model.base_url,
               "DISCORD_SHARD_COUNT": "2"}
        folders = [tmp_path / "zero", tmp_path / "one"]
        for folder in folders:
            folder.mkdir()  # SQLite serves one process: each replica keeps its own file here
        async with bot_process({**env, "DISCORD_SHARDS": "0"}, free_port(), cwd=folders[0]), \
                bot_process({**env, "DISCORD_SHARDS": "1"}, free_port(), cwd=folders[1]):
            await fake.wait_connected(timeout=30, shards=(0, 1))
            assert sorted(fake.identified_shards()) == [[0, 2], [1, 2]]
            assert not fake.calls_matching("GET", "/gateway/bot"), "a configured count needs no recommendation"
            dm = fake.dm_channel(ALICE)
            await fake.send_message(CHANNEL_ON_0, ALICE, "for shard zero", mentions_bot=True)
            await fake.send_message(CHANNEL_ON_1, ALICE, "for shard one", mentions_bot=True)
            await fake.send_dm(ALICE, "in private")
            for channel, text in ((CHANNEL_ON_0, "for shard zero"), (CHANNEL_ON_1, "for shard one"), (dm, "in private")):
                await fake.wait_for(lambda c=channel, t=text: f"echo: {t}" in fake.bot_contents(c), timeout=15, what=text)
        # Both processes have stopped, their turns drained: any second answer would be here by now.
        assert fake.bot_contents(CHANNEL_ON_0) == ["echo: for shard zero"]
        assert fake.bot_contents(CHANNEL_ON_1) == ["echo: for shard one"]
        assert fake.bot_contents(dm) == ["echo: in private"]
        assert len(model.requests) == 3
        assert answered_workspaces(folders[0] / "chatbots.db") == {str(GUILD_ON_0), "dm"}
        assert answered_workspaces(folders[1] / "chatbots.db") == {str(GUILD_ON_1)}


@pytest.mark.parametrize("shards, count, expected", [
    ("0", None, "DISCORD_SHARDS needs DISCORD_SHARD_COUNT"),
    ("0,2", "2", "DISCORD_SHARDS ids must be from 0 to 1"),
    ("1,1", "2", "DISCORD_SHARDS lists shard 1 twice"),
    ("one", "2", "DISCORD_SHARDS must be shard ids"),
    (None, "0", "DISCORD_SHARD_COUNT must be at least 1"),
])
def test_each_bad_shard_setting_has_its_own_message(shards: str | None, count: str | None, expected: str) -> None:
    env = {name: value for name, value in (("DISCORD_SHARDS", shards), ("DISCORD_SHARD_COUNT", count)) if value}
    with pytest.raises(ConfigError, match=expected):
        Config.from_env(env)


async def test_bad_shard_settings_stop_the_bot_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    async with FakeDiscord() as fake, FakeModelServer() as model:
        env = {"DISCORD_BOT_TOKEN": fake.token, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": str(fake.gateway_url), "OPENAI_BASE_URL": model.base_url}
        cases = {"shards-without-count": ({"DISCORD_SHARDS": "0"}, "DISCORD_SHARDS"),
                 "shard-out-of-range": ({"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARDS": "2"}, "DISCORD_SHARDS"),
                 "no-shards": ({"DISCORD_SHARD_COUNT": "0"}, "DISCORD_SHARD_COUNT")}

        async def attempt(name: str, extra: dict[str, str]) -> tuple[int, str]:
            folder = tmp_path / name
            folder.mkdir()
            return await bot_exit({**env, **extra}, free_port(), cwd=folder)

        results = await asyncio.gather(*(attempt(name, extra) for name, (extra, _) in cases.items()))
        for (name, (_, variable)), (code, stderr) in zip(cases.items(), results):
            lines = stderr.strip().splitlines()
            assert code != 0, name
            assert len(lines) == 1 and lines[0].startswith("chatbots: ") and variable in lines[0], (name, stderr)
        assert fake.identify_count == 0
