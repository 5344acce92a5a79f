"""Discord, end to end: the real discord.py client against the fake Discord REST + gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord.events import conversation_key, readable_text, translate
from adapters.runner import Bot
from chatbots.config import ConfigError, Config
from chatbots.types import ConversationKey
from tests.discord_rig import (
    ALICE,
    BOB,
    GENERAL,
    GUILD,
    OTHER_BOT,
    OTHER_GUILD,
    RANDOM,
    THREAD,
    DiscordRig,
    build_world,
    discord_rig,
)
from tests.fakes.discord import FakeDiscord, Intent, Perm
from tests.slack_rig import slack_rig

BOT = 900000000000000001  # FakeDiscord's default bot id


@pytest.fixture
async def rig(settings: Config) -> AsyncIterator[DiscordRig]:
    async with discord_rig(settings) as rig:
        yield rig


def user_turns(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


# -- connecting --


async def test_login_asks_for_message_content_but_not_the_members_intent(rig: DiscordRig) -> None:
    assert rig.fake.calls_matching("GET", "/users/@me") and rig.fake.identify_count == 1
    intents = int(rig.fake.gateway_received(2)[0].d["intents"])
    assert intents & Intent.MESSAGE_CONTENT and intents & Intent.GUILD_MESSAGES and intents & Intent.DIRECT_MESSAGES
    assert not intents & (Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{rig.bot.port}/healthz") as response:
            assert (await response.json())["platforms"] == ["discord"]


async def test_a_refused_message_content_intent_is_a_clear_start_up_error(settings: Config) -> None:
    async with FakeDiscord() as fake:
        fake.refuse_privileged = True
        bot = Bot(replace(settings, discord_bot_token=fake.token, discord_api_url=fake.api_url,
                          discord_gateway_url=str(fake.gateway_url), port=0))
        with pytest.raises(ConfigError, match="enable MESSAGE CONTENT INTENT .* Developer Portal"):
            await bot.start(host="127.0.0.1")
        await bot.stop(grace=0)


async def test_a_refused_bot_token_is_a_clear_start_up_error(settings: Config) -> None:
    async with FakeDiscord(token="the-real-token") as fake:
        bot = Bot(replace(settings, discord_bot_token="a-stale-token", discord_api_url=fake.api_url,
                          discord_gateway_url=str(fake.gateway_url), port=0))
        with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN was refused"):
            await bot.start(host="127.0.0.1")
        await bot.stop(grace=0)
        assert not fake.gateway_log, "no gateway connection with a refused token"


def test_endpoint_urls_are_checked(settings: Config) -> None:
    with pytest.raises(ConfigError, match="DISCORD_GATEWAY_URL must start with ws://"):
        Bot(replace(settings, discord_bot_token="t", discord_gateway_url="http://127.0.0.1:1/"))


# -- conversations --


async def test_a_mention_is_answered_as_a_reply_in_the_channel_after_typing(rig: DiscordRig) -> None:
    rig.model.queue("echo: what is 2+2?", hold=True)  # a model slow to start: typing shows meanwhile
    question = await rig.mention("what is 2+2?")
    await rig.fake.wait_for_call("POST", f"/channels/{GENERAL}/typing")
    rig.model.release_held()
    assert await rig.next_outcome() == "turn:answered"
    [answer] = rig.replies_to(question["id"])
    assert answer["content"] == "echo: what is 2+2?", "the bot's mention is not part of the question"
    post = rig.fake.calls_matching("POST", f"/channels/{GENERAL}/messages")[0]
    typing = rig.fake.calls_matching("POST", f"/channels/{GENERAL}/typing")[0]
    assert typing.t < post.t and typing.status == 204
    assert post.json["allowed_mentions"] == {"parse": [], "replied_user": False}, "model output never pings anyone"
    assert await rig.bot.engine.store.has_conversation(ConversationKey("discord", str(GUILD), str(GENERAL), str(GENERAL)))


async def test_an_answer_that_starts_at_once_needs_no_typing_indicator(rig: DiscordRig) -> None:
    await rig.ask("quick one")
    assert not rig.fake.calls_matching("POST", f"/channels/{GENERAL}/typing")


async def test_later_mentions_in_the_channel_continue_the_conversation(rig: DiscordRig) -> None:
    await rig.ask("my name is Ada")
    await rig.ask("I prefer tea", user=BOB)
    await rig.ask("what is my name?")
    turns = user_turns(rig.model.requests[-1])
    assert turns == ["Ada: my name is Ada", "bob: I prefer tea", "Ada: what is my name?"], "speakers by display name"
    assert "echo: my name is Ada" in str(rig.model.requests[-1]["messages"])


async def test_channel_chatter_not_addressed_to_the_bot_is_neither_answered_nor_stored(rig: DiscordRig) -> None:
    await rig.fake.send_message(GENERAL, ALICE, "just talking to people here", mentions=[BOB])
    await rig.fake.send_message(GENERAL, BOB, "@everyone lunch?")
    assert await rig.wait_outcomes(2) == ["ignored", "ignored"]
    assert rig.stored_messages() == 0 and not rig.model.requests
    assert not rig.fake.calls_matching("POST", f"/channels/{GENERAL}/")


async def test_a_reply_to_the_bot_is_addressed_to_it_even_without_a_ping(rig: DiscordRig) -> None:
    question = await rig.mention("name a colour")
    await rig.next_outcome()
    [answer] = rig.replies_to(question["id"])
    follow_up = await rig.fake.send_message(GENERAL, BOB, "and another?", reply_to=int(answer["id"]), reply_mention=False)
    assert await rig.next_outcome() == "turn:answered"
    assert rig.replies_to(follow_up["id"])[0]["content"] == "echo: bob: and another?", "two people: turns are labelled"


async def test_a_thread_is_its_own_conversation_under_its_parent_channel(rig: DiscordRig) -> None:
    await rig.ask("the channel's secret is 42")
    contents = await rig.ask("hello from the thread", channel=THREAD)
    assert contents == ["echo: hello from the thread"]
    assert "secret" not in str(rig.model.requests[-1]["messages"])
    await rig.ask("still in the thread", channel=THREAD)
    assert user_turns(rig.model.requests[-1]) == ["hello from the thread", "still in the thread"]
    store = rig.bot.engine.store
    assert await store.has_conversation(ConversationKey("discord", str(GUILD), str(GENERAL), str(THREAD)))


async def test_every_direct_message_is_for_the_bot(rig: DiscordRig) -> None:
    dm = rig.fake.dm_channel(ALICE)
    await rig.fake.send_dm(ALICE, "hi in private")
    assert await rig.next_outcome() == "turn:answered"
    await rig.fake.send_dm(ALICE, "and again")
    assert await rig.next_outcome() == "turn:answered"
    assert rig.fake.bot_contents(dm) == ["echo: hi in private", "echo: and again"]
    assert user_turns(rig.model.requests[-1]) == ["hi in private", "and again"]
    assert await rig.bot.engine.store.has_conversation(ConversationKey("discord", "dm", str(dm), str(dm)))


async def test_guilds_never_share_history_or_settings(rig: DiscordRig) -> None:
    store = rig.bot.engine.store
    await store.set_setting(await store.workspace_id("discord", str(GUILD)), "instructions", "Answer like a pirate.")
    first = await rig.mention("guild one secret")
    await rig.next_outcome()
    assert "pirate" in rig.model.requests[-1]["messages"][0]["content"]
    await rig.same_channel_in_another_guild(first, OTHER_GUILD, "hello from guild two")
    assert await rig.next_outcome() == "turn:answered"
    prompt = str(rig.model.requests[-1]["messages"])
    assert "guild one secret" not in prompt and "pirate" not in prompt
    assert await store.has_conversation(ConversationKey("discord", str(OTHER_GUILD), str(GENERAL), str(GENERAL)))


async def test_own_messages_other_bots_system_messages_and_edits_are_ignored(rig: DiscordRig) -> None:
    question = await rig.mention("start")
    await rig.next_outcome()
    await rig.fake.send_message(GENERAL, BOT, f"<@{BOT}> talking to myself")
    await rig.fake.send_message(GENERAL, OTHER_BOT, "hello bot", mentions_bot=True)
    await rig.fake.send_message(GENERAL, BOB, "", message_type=7)  # "bob joined the server"
    await rig.fake.send_message(GENERAL, BOB, f"<@{BOT}>", message_type=6)  # a pin notice
    await rig.fake.send_message_update(GENERAL, int(question["id"]), f"<@{BOT}> start again")  # an edit
    await rig.fake.send_dm(ALICE, "")  # no text and no files
    await rig.ask("still there?")
    assert rig.outcomes == ["turn:answered", "ignored", "ignored", "ignored", "ignored", "turn:answered"]
    assert len(rig.model.requests) == 2


async def test_other_bots_are_answered_when_allowed(settings: Config) -> None:
    async with discord_rig(settings, allow_bots=True) as rig:
        await rig.fake.send_message(GENERAL, OTHER_BOT, "hello bot", mentions_bot=True)
        await rig.fake.send_message(GENERAL, BOT, f"<@{BOT}> never myself")
        assert await rig.wait_outcomes(1) == ["turn:answered"]
        assert rig.fake.bot_contents(GENERAL)[-1] == "echo: hello bot" and len(rig.model.requests) == 1


# -- replies --


async def test_the_reply_streams_by_editing_about_once_per_interval(settings: Config) -> None:
    async with discord_rig(settings, update_interval=0.1) as rig:
        rig.model.chunk_delay = 0.05
        answer = " ".join(f"word{n}" for n in range(40))
        rig.model.queue(answer, chunks=12)
        question = await rig.mention("tell me slowly")
        assert await rig.next_outcome() == "turn:answered"
        [reply] = rig.replies_to(question["id"])
        history = rig.fake.content_history(int(reply["id"]))
        assert len(history) >= 3 and history[-1] == answer
        assert all(answer.startswith(shown) for shown in history)
        edits = rig.fake.calls_matching("PATCH", f"/channels/{GENERAL}/messages/")
        gaps = [later.t - earlier.t for earlier, later in zip(edits, edits[1:])]
        assert all(gap >= 0.08 for gap in gaps[:-1]), gaps  # the last edit is finish(): it does not wait


async def test_spilling_into_a_new_message_keeps_to_one_call_per_interval(settings: Config) -> None:
    async with discord_rig(settings, update_interval=0.1) as rig:
        rig.model.chunk_delay = 0.05
        answer = "\n\n".join(f"Paragraph {n}: " + "the quick brown fox jumps over the lazy dog " * 4 for n in range(16))
        assert 2800 <= len(answer) <= 3200
        rig.model.queue(answer, chunks=30)
        parts = await rig.ask("write two messages' worth")
        assert len(parts) == 2 and " ".join(parts).split() == answer.split()
        calls = [c for c in rig.fake.calls if c.path.startswith(f"/channels/{GENERAL}/messages") and c.method in ("POST", "PATCH")]
        gaps = [later.t - earlier.t for earlier, later in zip(calls, calls[1:])]
        # Only the final render may make its calls back to back (the last edit of each message that changed).
        assert all(gap >= 0.08 for gap in gaps[:-1]), gaps


async def test_a_long_answer_continues_in_follow_ups_with_balanced_code_fences(rig: DiscordRig) -> None:
    prose = "\n\n".join(f"Paragraph {n}: " + "the quick brown fox jumps over the lazy dog " * 6 for n in range(6))
    code = "```python\n" + "\n".join(f"value_{n} = compute({n}, scale=2)  # step {n}" for n in range(45)) + "\n```"
    outro = "\n\n".join(f"Closing {n}: " + "pack my box with five dozen liquor jugs " * 5 for n in range(5))
    answer = f"{prose}\n\n{code}\n\n{outro}"
    assert 4400 <= len(answer) <= 4700
    rig.model.queue(answer, chunks=30)
    parts = await rig.ask("write a lot")
    assert len(parts) >= 3 and all(len(part) <= 2000 for part in parts)
    for part in parts:
        fences = [line for line in part.split("\n") if line.strip().startswith("```")]
        assert len(fences) % 2 == 0, part

    def words(text: str) -> list[str]:
        return [w for line in text.split("\n") if not line.strip().startswith("```") for w in line.split()]

    assert [w for part in parts for w in words(part)] == words(answer), "nothing lost, no word cut"
    first, *rest = rig.fake.bot_messages(GENERAL)
    assert first.get("message_reference") and not any(m.get("message_reference") for m in rest)


async def test_a_rate_limited_edit_is_retried_and_the_final_content_lands(rig: DiscordRig) -> None:
    rig.model.chunk_delay = 0.02
    rig.model.queue("first words, then the rest of the answer", chunks=5)
    rule = rig.fake.fail_next("PATCH", f"/channels/{GENERAL}/messages/", status=429, retry_after=0.05)
    contents = await rig.ask("go")
    assert contents == ["first words, then the rest of the answer"]
    assert rule.hits == 1
    assert [c.status for c in rig.fake.calls_matching("PATCH", f"/channels/{GENERAL}/messages/")] == [429, 200]


async def test_a_failed_final_edit_posts_the_answer_instead_of_losing_it(rig: DiscordRig) -> None:
    rig.model.chunk_delay = 0.02
    rig.model.queue("first words, then the rest of the answer", chunks=5)
    rig.fake.fail_next("PATCH", f"/channels/{GENERAL}/messages/", status=404, times=None)
    contents = await rig.ask("go")
    assert contents[-1] == "first words, then the rest of the answer"


async def test_a_model_failure_ends_as_a_short_friendly_reply(rig: DiscordRig) -> None:
    for _ in range(3):
        rig.model.queue(status=500, retry_after=0)
    await rig.mention("are you ok?")
    assert await rig.next_outcome() == "turn:failed"
    [answer] = rig.fake.bot_contents(GENERAL)
    assert "model server had a problem" in answer
    assert "Traceback" not in answer and "500" not in answer and len(answer) < 200


async def test_a_channel_the_bot_cannot_post_in_is_logged_once_and_not_retried(
    rig: DiscordRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    rig.fake.set_overwrite(RANDOM, GUILD, deny=Perm.SEND_MESSAGES)
    await rig.mention("top secret question", channel=RANDOM)
    await rig.mention("top secret again", channel=RANDOM)
    assert await rig.wait_outcomes(2) == ["forbidden", "forbidden"]
    assert not rig.fake.calls_matching("POST", f"/channels/{RANDOM}/") and not rig.model.requests
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(RANDOM) in warning.getMessage() and "Send Messages" in warning.getMessage()
    assert "secret" not in caplog.text

    rig.fake.set_overwrite(RANDOM, GUILD, allow=Perm.SEND_MESSAGES)  # an admin fixes it
    assert await rig.ask("now?", channel=RANDOM) == ["echo: now?"]


async def test_a_403_on_posting_is_logged_once_and_the_channel_is_not_tried_again(
    rig: DiscordRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    rig.fake.fail_next("POST", f"/channels/{RANDOM}/messages", status=403, times=None)
    await rig.mention("first", channel=RANDOM)
    await rig.next_outcome()
    await rig.mention("second", channel=RANDOM)
    assert await rig.next_outcome() == "forbidden"
    assert len(rig.fake.calls_matching("POST", f"/channels/{RANDOM}/messages")) == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert await rig.ask("elsewhere") == ["echo: elsewhere"], "other channels are unaffected"


async def test_a_missing_permissions_refusal_names_the_permissions_and_is_counted(
    rig: DiscordRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    rig.fake.fail_next("POST", f"/channels/{RANDOM}/messages", status=403, times=None)  # 50013 Missing Permissions
    await rig.mention("first", channel=RANDOM)
    await rig.next_outcome()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "View Channel, Send Messages" in warning and "Read Message History (Missing Permissions)" in warning
    exposition = rig.bot.engine.metrics.exposition().decode()
    assert 'chatbots_failures_total{kind="missing_permission",source="discord"} 1.0' in exposition


async def test_a_channel_discord_does_not_know_is_named_once_and_counted(
    rig: DiscordRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    rig.fake.fail_next("POST", f"/channels/{RANDOM}/messages", status=404, times=None, code=10003,
                       message="Unknown Channel")
    await rig.mention("first", channel=RANDOM)
    await rig.next_outcome()
    await rig.mention("second", channel=RANDOM)
    assert await rig.next_outcome() == "forbidden"
    assert len(rig.fake.calls_matching("POST", f"/channels/{RANDOM}/messages")) == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"channel {RANDOM}" in warning and "error 10003" in warning and "add the bot" in warning
    exposition = rig.bot.engine.metrics.exposition().decode()
    assert 'chatbots_failures_total{kind="channel_not_found",source="discord"} 1.0' in exposition
    assert await rig.ask("elsewhere") == ["echo: elsewhere"], "other channels are unaffected"


async def test_without_read_message_history_answers_are_plain_messages(rig: DiscordRig) -> None:
    rig.fake.set_overwrite(RANDOM, GUILD, deny=Perm.READ_MESSAGE_HISTORY)
    assert await rig.ask("can you hear me?", channel=RANDOM) == ["echo: can you hear me?"]
    assert not rig.fake.bot_messages(RANDOM)[0].get("message_reference")


async def test_a_message_replayed_after_a_gateway_resume_is_answered_once(rig: DiscordRig) -> None:
    first = await rig.mention("only once please")
    assert await rig.next_outcome() == "turn:answered"
    async with rig.fake.gateway_offline():
        await rig.fake.dispatch("MESSAGE_CREATE", first, Intent.GUILD_MESSAGES)  # replayed on RESUME
        missed = await rig.mention("sent while you were away", channel=RANDOM)
    outcomes = await rig.wait_outcomes(3)
    assert sorted(outcomes[1:]) == ["turn:answered", "turn:duplicate"]
    assert rig.fake.resume_count == 1 and rig.fake.identify_count == 1
    assert len(rig.replies_to(first["id"])) == 1 and len(rig.replies_to(missed["id"])) == 1
    assert len(rig.model.requests) == 2


async def test_slack_and_discord_run_in_one_process(settings: Config) -> None:
    async with FakeDiscord() as fake:
        build_world(fake)
        both = replace(settings, discord_bot_token=fake.token, discord_api_url=fake.api_url,
                       discord_gateway_url=str(fake.gateway_url))
        async with slack_rig(both, "http") as slack:
            ts = await slack.mention("hello slack")
            [answer] = await slack.reply_in("C1", ts)
            assert answer.text == "echo: hello slack"
            await fake.wait_connected()
            await fake.send_message(GENERAL, ALICE, "hello discord", mentions_bot=True)
            await fake.wait_for(lambda: fake.bot_contents(GENERAL) == ["echo: hello discord"])
            assert [s.name for s in slack.bot.services] == ["slack", "discord"]


# -- the translation rules, on plain stand-ins --


def _message(content: str, **fields: Any) -> Any:
    base: dict[str, Any] = dict(
        id=1, content=content, type=discord.MessageType.default, webhook_id=None, reference=None,
        author=SimpleNamespace(id=ALICE, bot=False, system=False, display_name="Ada"),
        channel=SimpleNamespace(id=GENERAL, type=discord.ChannelType.text), guild=SimpleNamespace(id=GUILD),
        mentions=[SimpleNamespace(id=BOT, display_name="chatbots")], role_mentions=[], raw_role_mentions=[],
        channel_mentions=[],
    )
    return SimpleNamespace(**{**base, **fields})


def test_translation_keys_threads_under_their_parent_and_dms_apart() -> None:
    thread = SimpleNamespace(id=THREAD, type=discord.ChannelType.public_thread, parent_id=GENERAL)
    assert conversation_key(_message("x", channel=thread)) == ConversationKey("discord", str(GUILD), str(GENERAL), str(THREAD))
    dm = SimpleNamespace(id=555, type=discord.ChannelType.private)
    assert conversation_key(_message("x", channel=dm, guild=None)) == ConversationKey("discord", "dm", "555", "555")
    uncached = SimpleNamespace(id=777, type=None, guild_id=OTHER_GUILD)  # a guild not in the cache yet
    assert conversation_key(_message("x", channel=uncached, guild=None)).workspace == str(OTHER_GUILD)


def test_translation_reads_mentions_as_names_and_knows_the_bots_role() -> None:
    me, bob = SimpleNamespace(id=BOT, display_name="chatbots"), SimpleNamespace(id=BOB, display_name="bob")
    message = _message(f"<@!{BOT}> ask <@{BOB}> about <:party:123> in <#9>", mentions=[me, bob],
                       channel_mentions=[SimpleNamespace(id=9, name="ops")])
    assert readable_text(message, BOT) == "ask @bob about :party: in #ops"
    assert translate(_message(f"<@{BOB}> see you", mentions=[bob]), BOT) is None, "talking to someone else"
    by_role = _message("<@&66> hi", mentions=[], raw_role_mentions=[66])  # Discord's autocomplete offers the bot's role
    inbound = translate(by_role, BOT, bot_role_id=66)
    assert inbound is not None and inbound.text == "hi" and inbound.author_name == "Ada"


# -- typing and lifecycle --


async def test_typing_is_renewed_while_the_model_thinks_and_stops_once_text_shows(
    rig: DiscordRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adapters.discord.reply.TYPING_REFRESH", 0.05)
    rig.model.queue("finally", hold=True)
    await rig.mention("think hard")
    await rig.fake.wait_for_call("POST", f"/channels/{GENERAL}/typing", count=3)
    rig.model.release_held()
    assert await rig.next_outcome() == "turn:answered"
    [post] = rig.fake.calls_matching("POST", f"/channels/{GENERAL}/messages")
    assert all(c.t < post.t for c in rig.fake.calls_matching("POST", f"/channels/{GENERAL}/typing"))


async def test_stopping_lets_a_reply_in_flight_finish(rig: DiscordRig) -> None:
    rig.model.queue("worth the wait", hold=True)
    question = await rig.mention("one last thing")
    await rig.model.wait_for_requests(1)
    stopping = asyncio.create_task(rig.service.stop(grace=5))
    rig.model.release_held()
    await stopping
    assert [m["content"] for m in rig.replies_to(question["id"])] == ["worth the wait"]
    assert rig.outcomes == ["turn:answered"]


async def test_a_gateway_that_closes_for_good_is_noticed(rig: DiscordRig) -> None:
    await rig.fake.disconnect_gateway(code=4004)  # authentication failed: discord.py gives up
    with pytest.raises(discord.ConnectionClosed):
        await asyncio.wait_for(rig.service.wait_closed(), 5)
