"""Self-tests for tests.fakes.discord: the REAL discord.py client must work against the fake.

Every test runs the client through ``running_client``, which re-raises anything that killed the
client's connect task (a schema-incomplete payload would otherwise fail silently).
No sleeps: waits are discord.py's ``client.wait_for`` or ``fake.wait_for`` with timeouts.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fakes.discord import (
    FakeDiscord,
    Intent,
    Perm,
    redirect_discordpy,
    running_client,
)

GUILD = 100
OWNER = 5
TEXT = 200
THREAD = 201
LOCKED = 202
MODS = 300
ALICE = 42  # has the "mods" role with Manage Server
BOB = 43


def _intents(**overrides: bool) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = True
    for name, value in overrides.items():
        setattr(intents, name, value)
    return intents


def _client(**overrides: bool) -> discord.Client:
    # guild_ready_timeout: discord.py waits this long after the last GUILD_CREATE before on_ready.
    return discord.Client(intents=_intents(**overrides), guild_ready_timeout=0.1)


@pytest.fixture
async def fake():
    async with FakeDiscord() as f:
        f.add_guild(GUILD, "Test Guild", owner_id=OWNER)
        f.add_role(GUILD, MODS, Perm.MANAGE_GUILD, name="mods")
        f.add_channel(GUILD, TEXT, "general", topic="chat")
        f.add_channel(GUILD, THREAD, "a thread", type=11, parent_id=TEXT, owner_id=ALICE)
        f.add_channel(GUILD, LOCKED, "announcements",
                      overwrites=[{"id": GUILD, "type": 0, "allow": 0, "deny": Perm.SEND_MESSAGES}])
        f.add_member(GUILD, ALICE, "alice", roles=[MODS])
        f.add_member(GUILD, BOB, "bob")
        with redirect_discordpy(f):
            yield f


def test_fake_module_does_not_shadow_discordpy() -> None:
    assert discord.__file__ and "site-packages" in discord.__file__
    assert sys.modules["discord"] is discord
    assert FakeDiscord.__module__ == "tests.fakes.discord"


@pytest.mark.parametrize("compress", [True, False], ids=["zlib-stream", "plain-text"])
async def test_login_ready_and_caches(fake: FakeDiscord, compress: bool) -> None:
    fake.compress_frames = compress
    client = _client()
    async with running_client(fake, client) as task:
        assert client.user is not None and client.user.id == fake.bot_id and client.user.bot
        guild = client.get_guild(GUILD)
        assert guild is not None and guild.name == "Test Guild" and guild.owner_id == OWNER
        assert guild.me is not None and guild.me.id == fake.bot_id
        general = guild.get_channel(TEXT)
        assert isinstance(general, discord.TextChannel) and general.topic == "chat"
        assert isinstance(guild.get_thread(THREAD), discord.Thread)
        assert guild.get_role(MODS).permissions.manage_guild
        assert general.permissions_for(guild.me).send_messages
        assert general.permissions_for(guild.me).read_message_history
        assert not guild.get_channel(LOCKED).permissions_for(guild.me).send_messages
        assert fake.calls_matching("GET", "/users/@me") and fake.calls_matching("GET", "/oauth2/applications/@me")
        assert fake.identify_count == 1 and fake.is_connected
        assert fake.connections[0].query["compress"] == "zlib-stream"
        assert not task.done()


async def test_rest_wire_format(fake: FakeDiscord) -> None:
    fake.latency = 0.05
    async with aiohttp.ClientSession() as http:
        t0 = time.monotonic()
        async with http.get(f"{fake.api_url}/users/@me", headers={"Authorization": f"Bot {fake.token}"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset-After",
                    "X-RateLimit-Bucket"} <= set(resp.headers)
            assert (await resp.json())["id"] == str(fake.bot_id)
        assert time.monotonic() - t0 >= 0.05
        async with http.get(f"{fake.api_url}/users/@me", headers={"Authorization": "Bot wrong"}) as resp:
            assert resp.status == 401
    assert [c.status for c in fake.calls] == [200, 401]


async def test_message_create_with_mentions_and_member(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client) as task:
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        sent = await fake.send_message(TEXT, ALICE, "what is 2+2?", mentions_bot=True)
        message = await waiter
        assert message.id == int(sent["id"])
        assert message.content == f"<@{fake.bot_id}> what is 2+2?"
        assert client.user in message.mentions
        assert isinstance(message.author, discord.Member)
        assert message.author.guild_permissions.manage_guild
        assert message.channel.permissions_for(message.author).manage_guild
        assert message.guild is not None and message.guild.id == GUILD

        waiter = client.wait_for("message", check=lambda m: m.author.id == BOB, timeout=5)
        await fake.send_message(TEXT, BOB, "no ping here")
        plain = await waiter
        assert plain.mentions == [] and not plain.author.guild_permissions.manage_guild

        bot_said = await message.channel.send("4")
        waiter = client.wait_for("message", check=lambda m: m.author.id == BOB, timeout=5)
        await fake.send_message(TEXT, BOB, "and 3+3?", reply_to=bot_said.id)
        reply = await waiter
        assert reply.type is discord.MessageType.reply
        assert reply.reference is not None and reply.reference.message_id == bot_said.id
        assert isinstance(reply.reference.resolved, discord.Message) and reply.reference.resolved.content == "4"
        assert client.user in reply.mentions  # replies ping the replied-to author by default

        edited = client.wait_for("message_edit", timeout=5)
        await fake.send_message_update(TEXT, reply.id, "and 4+4?")
        before, after = await edited
        assert before.content == "and 3+3?" and after.content == "and 4+4?" and after.edited_at is not None

        waiter = client.wait_for("message", check=lambda m: m.type is discord.MessageType.new_member, timeout=5)
        await fake.send_message(TEXT, BOB, "", message_type=7)
        assert (await waiter).author.id == BOB
        waiter = client.wait_for("message", check=lambda m: m.author == client.user, timeout=5)
        await fake.send_message(TEXT, fake.bot_id, "said by the bot elsewhere")
        assert (await waiter).content == "said by the bot elsewhere"
        assert not task.done()


async def test_send_edit_reply_and_history(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client):
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        await fake.send_message(TEXT, ALICE, "hello bot")
        question = await waiter

        echoed = client.wait_for("message", check=lambda m: m.author == client.user, timeout=5)
        answer = await question.reply("thinking…")
        assert (await echoed).id == answer.id  # Discord echoes the bot's own messages
        async with question.channel.typing():
            pass
        for partial in ("Hel", "Hello", "Hello there"):
            answer = await answer.edit(content=partial)
        assert answer.content == "Hello there" and answer.edited_at is not None

        mine = fake.bot_messages(TEXT)
        assert [m["content"] for m in mine] == ["Hello there"]
        assert mine[0]["message_reference"]["message_id"] == str(question.id)
        assert fake.content_history(answer.id) == ["thinking…", "Hel", "Hello", "Hello there"]
        post = fake.calls_matching("POST", f"/channels/{TEXT}/messages")[0]
        assert post.json["message_reference"]["message_id"] == question.id
        assert fake.calls_matching("POST", f"/channels/{TEXT}/typing", status=204)

        history = [m async for m in question.channel.history(limit=10, oldest_first=True)]
        assert [m.content for m in history] == ["hello bot", "Hello there"]

        with pytest.raises(discord.Forbidden) as denied:
            await client.get_channel(LOCKED).send("nope")
        assert denied.value.code == 50013
        with pytest.raises(discord.HTTPException) as too_long:
            await question.channel.send("x" * 2001)
        assert too_long.value.code == 50035


async def test_thread_message_resolves_thread(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client):
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        await fake.send_message(THREAD, ALICE, "in a thread")
        message = await waiter
        assert isinstance(message.channel, discord.Thread)
        assert message.channel.id == THREAD and message.channel.parent_id == TEXT
        assert isinstance(await client.fetch_channel(THREAD), discord.Thread)
        assert isinstance(await client.fetch_channel(TEXT), discord.TextChannel)
        await message.channel.send("thread answer")
        assert fake.bot_contents(THREAD) == ["thread answer"]

        starter = await message.channel.parent.send("let's talk about this")
        created = client.wait_for("thread_create", timeout=5)
        thread = await starter.create_thread(name="new topic")
        assert (await created).id == thread.id == starter.id and thread.parent_id == TEXT
        await thread.send("in the new thread")
        assert fake.bot_contents(thread.id) == ["in the new thread"]


async def test_dm_message(fake: FakeDiscord) -> None:
    fake.add_user(77, "carol")
    client = _client()
    async with running_client(fake, client):
        waiter = client.wait_for("message", check=lambda m: m.author.id == 77, timeout=5)
        await fake.send_dm(77, "psst")
        message = await waiter
        assert message.guild is None and isinstance(message.channel, discord.DMChannel)
        assert message.content == "psst"
        await message.channel.send("hi carol")
        assert fake.bot_contents(fake.dm_channel(77)) == ["hi carol"]

        dm = await (await client.fetch_user(BOB)).create_dm()
        await dm.send("hi bob")
        assert fake.calls_matching("POST", "/users/@me/channels")
        assert fake.bot_contents(fake.dm_channel(BOB)) == ["hi bob"]
        fake.dms_closed.add(BOB)
        with pytest.raises(discord.Forbidden) as closed:
            await dm.send("again")
        assert closed.value.code == 50007


async def test_429_on_patch_is_retried_and_403_is_raised(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client) as task:
        channel = client.get_channel(TEXT)
        message = await channel.send("draft")
        rule = fake.fail_next("PATCH", "/messages/", status=429, retry_after=0.05)
        edited = await message.edit(content="final")
        assert edited.content == "final" and rule.hits == 1
        assert [c.status for c in fake.calls_matching("PATCH", f"/messages/{message.id}")] == [429, 200]
        assert fake.bot_contents(TEXT) == ["final"]

        fake.fail_next("POST", f"/channels/{TEXT}/messages", status=429, retry_after=0.05, global_=True)
        await channel.send("after a global limit")

        fake.fail_next("PATCH", "/messages/", status=403)
        with pytest.raises(discord.Forbidden) as forbidden:
            await message.edit(content="never")
        assert forbidden.value.code == 50013 and forbidden.value.text == "Missing Permissions"

        fake.fail_next("PATCH", "/messages/", status=429, via=False)  # a Cloudflare ban is not retried
        with pytest.raises(discord.HTTPException) as banned:
            await message.edit(content="never")
        assert banned.value.status == 429
        assert fake.bot_contents(TEXT) == ["final", "after a global limit"]
        assert not task.done()


async def test_gateway_resume_delivers_queued_events(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client) as task:
        first_session = fake.session_id
        resumed = client.wait_for("resumed", timeout=5)
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        async with fake.gateway_offline():
            assert not fake.is_connected
            queued = await fake.send_message(TEXT, ALICE, "sent while you were away", mentions_bot=True)
        message = await waiter
        await resumed
        await fake.wait_connected()
        assert fake.is_connected
        assert message.id == int(queued["id"]) and message.content.endswith("sent while you were away")
        assert fake.resume_count == 1 and fake.identify_count == 1 and fake.session_id == first_session
        assert fake.connections[-1].path == "/resume"  # resumed at READY's resume_gateway_url

        # A dropped TCP connection (no close frame) is resumed as well.
        resumed = client.wait_for("resumed", timeout=5)
        await fake.disconnect_gateway(code=None)
        await resumed
        waiter = client.wait_for("message", check=lambda m: m.author.id == BOB, timeout=5)
        await fake.send_message(TEXT, BOB, "still there?")
        assert (await waiter).content == "still there?"
        assert fake.resume_count == 2 and fake.identify_count == 1
        assert not task.done()


async def test_refused_privileged_intent_raises(fake: FakeDiscord) -> None:
    fake.refuse_privileged = True
    client = _client()
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(fake.token), 10)
    finally:
        await client.close()
    assert fake.gateway_received(2)[0].d["intents"] & Intent.MESSAGE_CONTENT


async def test_app_command_group_sync_and_interaction(fake: FakeDiscord) -> None:
    client = _client()
    tree = app_commands.CommandTree(client)
    chatbot = app_commands.Group(name="chatbot", description="Chat bot settings",
                                 default_permissions=discord.Permissions(manage_guild=True))
    model = app_commands.Group(name="model", description="Model settings", parent=chatbot)
    seen: dict[str, object] = {}
    pinged = asyncio.Event()

    @chatbot.command(name="ask", description="Ask the model")
    async def ask(interaction: discord.Interaction, prompt: str, temperature: float = 1.0) -> None:
        seen["ask"] = (prompt, temperature, interaction.permissions.manage_guild, interaction.channel_id)
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"answer to {prompt}")
        await interaction.followup.send("a second follow-up")

    @model.command(name="set", description="Choose the model")
    async def set_model(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(f"model set to {name}", ephemeral=True)
        await interaction.edit_original_response(content=f"model is now {name}")

    @tree.command(name="ping", description="Global command")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")
        seen["ping"] = (await interaction.original_response()).content
        pinged.set()

    tree.add_command(chatbot, guild=discord.Object(GUILD))
    async with running_client(fake, client) as task:
        synced = await tree.sync(guild=discord.Object(GUILD))
        assert [c.name for c in synced] == ["chatbot"] and synced[0].id
        [registered] = fake.commands(GUILD)
        assert registered["default_member_permissions"] == str(Perm.MANAGE_GUILD)
        assert {o["name"] for o in registered["options"]} == {"ask", "model"}

        payload = await fake.send_interaction("chatbot ask", channel_id=TEXT, user_id=ALICE,
                                              options={"prompt": "hi", "temperature": 0.5})
        record = fake.interactions[int(payload["id"])]
        await fake.wait_for(lambda: len(record.followup_message_ids) == 1, what="second follow-up")
        assert seen["ask"] == ("hi", 0.5, True, TEXT)
        assert record.ack_type == 5 and record.callbacks[0]["type"] == 5
        assert payload["data"]["guild_id"] == str(GUILD) and payload["data"]["id"] == registered["id"]
        assert fake.bot_contents(TEXT) == ["answer to hi", "a second follow-up"]
        assert fake.get_message(record.original_message_id)["content"] == "answer to hi"

        payload = await fake.send_interaction("chatbot model set", channel_id=THREAD, user_id=BOB,
                                              options={"name": "gpt-x"})
        record = fake.interactions[int(payload["id"])]
        await fake.wait_for_call("PATCH", f"/webhooks/{fake.application_id}/{record.token}/messages/@original")
        original = fake.get_message(record.original_message_id)
        assert original["content"] == "model is now gpt-x" and original["flags"] & 64  # ephemeral
        assert fake.content_history(record.original_message_id) == ["model set to gpt-x", "model is now gpt-x"]

        await tree.sync()
        assert [c["name"] for c in fake.commands()] == ["ping"]
        fake.add_user(77, "carol")
        payload = await fake.send_interaction("ping", channel_id=fake.dm_channel(77), user_id=77)
        assert "member" not in payload and payload["user"]["id"] == "77"
        await asyncio.wait_for(pinged.wait(), 5)  # client-side state: wait on the client, not the fake
        assert seen["ping"] == "pong" and fake.bot_contents(fake.dm_channel(77)) == ["pong"]
        assert not task.done()


async def test_reactions_and_guild_delete(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client):
        message = await client.get_channel(TEXT).send("rate me")
        waiter = client.wait_for("raw_reaction_add", timeout=5)
        await fake.send_reaction_add(TEXT, message.id, ALICE, "👍")
        event = await waiter
        assert event.user_id == ALICE and str(event.emoji) == "👍" and event.member.id == ALICE
        removed = client.wait_for("raw_reaction_remove", timeout=5)
        await fake.send_reaction_remove(TEXT, message.id, ALICE, "👍")
        assert (await removed).message_id == message.id
        await message.add_reaction("✅")
        assert fake.get_message(message.id)["reactions"][0]["me"]

        left = client.wait_for("guild_remove", timeout=5)
        await fake.send_guild_delete(GUILD)
        assert (await left).id == GUILD and client.get_guild(GUILD) is None


async def test_members_intent_chunks_and_content_intent_filtering(fake: FakeDiscord) -> None:
    client = _client(members=True, message_content=False)
    async with running_client(fake, client):
        guild = client.get_guild(GUILD)
        assert guild.chunked and {m.id for m in guild.members} == {fake.bot_id, OWNER, ALICE, BOB}
        assert fake.gateway_received(8)  # REQUEST_GUILD_MEMBERS answered by GUILD_MEMBERS_CHUNK

        waiter = client.wait_for("message", check=lambda m: m.author.id == BOB, timeout=5)
        await fake.send_message(TEXT, BOB, "secret")
        assert (await waiter).content == ""  # no message_content intent: Discord blanks it
        waiter = client.wait_for("message", check=lambda m: m.author.id == BOB, timeout=5)
        await fake.send_message(TEXT, BOB, "hey bot", mentions_bot=True)
        assert (await waiter).content.endswith("hey bot")  # ...unless the bot is mentioned

        joined = client.wait_for("member_join", timeout=5)
        fake.add_member(GUILD, 44, "dave")
        assert (await joined).id == 44


async def test_broken_payload_kills_client_and_is_reported(fake: FakeDiscord) -> None:
    client = _client()
    with pytest.raises(KeyError):
        async with running_client(fake, client) as task:
            # A MESSAGE_CREATE without "content" raises inside discord.py's parser.
            await fake.dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": str(TEXT), "type": 0})
            await asyncio.wait_for(asyncio.shield(task), 5)


async def test_wait_for_timeout_lists_recent_calls(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client):
        with pytest.raises(AssertionError, match="GET /users/@me -> 200"):
            await fake.wait_for_call("DELETE", "/nothing", timeout=0.05)


async def test_attachments_both_ways(fake: FakeDiscord) -> None:
    client = _client()
    async with running_client(fake, client):
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        await fake.send_message(TEXT, ALICE, "see file", attachments=[{"filename": "notes.txt", "content": "abc"}])
        message = await waiter
        assert message.attachments[0].filename == "notes.txt"
        assert await message.attachments[0].read() == b"abc"  # served by the fake, not the CDN

        await message.channel.send("long answer attached", file=discord.File(io.BytesIO(b"x" * 3000), "answer.md"))
        [mine] = fake.bot_messages(TEXT)
        assert mine["attachments"][0]["filename"] == "answer.md" and mine["attachments"][0]["size"] == 3000
        call = fake.calls_matching("POST", f"/channels/{TEXT}/messages")[-1]
        assert call.json["content"] == "long answer attached" and call.files[0][1] == b"x" * 3000


async def test_enforced_rate_limit_makes_discordpy_wait(fake: FakeDiscord) -> None:
    fake.enforce_rate_limits = True
    fake.rate_limits["messages.edit"] = (2, 0.3)
    client = _client()
    async with running_client(fake, client):
        message = await client.get_channel(TEXT).send("v0")
        t0 = time.monotonic()
        for i in range(1, 4):
            message = await message.edit(content=f"v{i}")
        # remaining hit 0 after two edits, so discord.py waited for the window instead of getting a 429
        assert time.monotonic() - t0 >= 0.2
        assert [c.status for c in fake.calls_matching("PATCH", "/messages/")] == [200, 200, 200]
        assert fake.bot_contents(TEXT) == ["v3"]


class _NoIdentifyDelayClient(discord.Client):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every non-initial IDENTIFY; skip that in tests."""


async def test_reconnect_and_invalid_session(fake: FakeDiscord) -> None:
    client = _NoIdentifyDelayClient(intents=_intents(), guild_ready_timeout=0.1)
    async with running_client(fake, client) as task:
        resumed = client.wait_for("resumed", timeout=5)
        await fake.send_reconnect()
        await resumed
        assert fake.resume_count == 1

        ready_again = client.wait_for("ready", timeout=5)
        await fake.invalidate_session(resumable=False)
        await ready_again
        assert fake.identify_count == 2
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        await fake.send_message(TEXT, ALICE, "new session works")
        assert (await waiter).content == "new session works"
        assert not task.done() and not fake.internal_errors


async def test_attachments_carry_discords_fields_and_downloads_are_recorded(fake: FakeDiscord) -> None:
    client = _client()
    picture = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + (7).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(20)
    async with running_client(fake, client):
        waiter = client.wait_for("message", check=lambda m: m.author.id == ALICE, timeout=5)
        await fake.send_message(TEXT, ALICE, "pic", attachments=[{"filename": "p.png", "content": picture,
                                                                  "content_type": "image/png"}])
        [attachment] = (await waiter).attachments
        assert (attachment.width, attachment.height, attachment.content_type) == (7, 5, "image/png")
        assert "?ex=" in attachment.url and "&hm=" in attachment.url  # a signed CDN link, as Discord sends
        fake.hosting.fail(next(iter(fake.hosting.blobs)), 404)
        with pytest.raises(discord.NotFound):
            await attachment.read()
    assert [r.status for r in fake.file_downloads] == [404]
