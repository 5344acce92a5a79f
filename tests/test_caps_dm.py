"""Direct messages are capped by the operator on both platforms, as the real adapters key them."""

from __future__ import annotations

from dataclasses import replace

from chatbots.config import Config
from tests.discord_rig import ALICE, GENERAL, discord_rig
from tests.fakes.slack import dm_message, next_ts
from tests.slack_rig import slack_rig


async def test_slack_direct_messages_get_the_operators_rate_limit(settings: Config) -> None:
    async with slack_rig(replace(settings, dm_limit_rate=1), "http") as rig:
        first, second = next_ts(), next_ts()
        await rig.deliver(dm_message("D1", "U1", "hi in private", ts=first))
        await rig.reply_in("D1", first)
        await rig.deliver(dm_message("D1", "U1", "and again", ts=second))
        [refusal] = await rig.reply_in("D1", second)
        assert "1 per minute" in refusal.text and len(rig.model.requests) == 1
        for _ in range(2):  # the team's channels keep the team's own (no) caps
            await rig.reply_in("C1", await rig.mention("in a channel"))
        assert len(rig.model.requests) == 3


async def test_discord_direct_messages_get_the_operators_daily_allowance(settings: Config) -> None:
    async with discord_rig(settings, dm_limit_user=2000) as rig:
        rig.model.answer_tokens = 100_000  # each answer talks until its limit
        dm = rig.fake.dm_channel(ALICE)
        await rig.fake.send_dm(ALICE, "hi in private")
        assert await rig.next_outcome() == "turn:answered"
        await rig.fake.send_dm(ALICE, "and again")
        assert await rig.next_outcome() == "turn:refused"
        assert "daily allowance of 2,000 tokens" in rig.fake.bot_contents(dm)[-1]
        assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in await rig.bot.engine.store.usage_rows("2000-01-01")) <= 2000
        rig.model.answer_tokens = None
        await rig.ask("in a server", channel=GENERAL)  # servers keep their own (no) caps
