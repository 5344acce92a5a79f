"""Where and for whom the bot answers, a channel's own model, and `why`: the engine against the fake model."""

from __future__ import annotations

from collections.abc import Callable

from chatbots.access import CHANNEL_OFF_NOTE, DMS_OFF_NOTE, USERS_NOTE
from chatbots.commands import Caller, Commands
from chatbots.engine import Engine
from chatbots.types import Addressed, ConversationKey, Inbound
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply


def key(channel: str, workspace: str = "T1", platform: str = "slack") -> ConversationKey:
    return ConversationKey(platform, workspace, channel, channel)


def said(where: ConversationKey, n: int, author: str = "U1", roles: tuple[str, ...] = ()) -> Inbound:
    return Inbound(where, f"m{n}", author, "Ada", f"question {n}", author_roles=roles)


async def admin(engine: Engine, command: str, where: ConversationKey) -> str:
    return await Commands.for_engine(engine).run(Caller(where, "UADMIN", True), command)


async def test_a_channel_switched_off_gets_one_private_note_and_no_model_call(
    engine: Engine, model_server: FakeModelServer
) -> None:
    off, other = key("C1"), key("C2")
    assert "no longer answer" in await admin(engine, "channel off", off)
    replies = [RecordingReply() for _ in range(3)]
    for n, reply in enumerate(replies):
        assert (await engine.handle(said(off, n), reply)).status == "refused"
    assert replies[0].private_notes == [CHANNEL_OFF_NOTE] and not replies[0].notice
    assert not replies[1].private_notes and not replies[2].private_notes, "one note at most"
    assert not model_server.requests and not await engine.store.has_conversation(off), "nothing stored either"
    assert (await engine.handle(said(other, 9), RecordingReply())).status == "answered"
    await admin(engine, "channel on", off)
    assert (await engine.handle(said(off, 10), RecordingReply())).status == "answered"


async def test_channels_only_answers_in_channels_switched_on(engine: Engine, model_server: FakeModelServer) -> None:
    await admin(engine, "channels only", key("C1"))
    assert "do not answer" in await Commands.for_engine(engine).run(Caller(key("C2"), "U1", False), "channel")
    assert (await engine.handle(said(key("C2"), 1), RecordingReply())).status == "refused"
    await admin(engine, "channel on", key("C2"))
    assert (await engine.handle(said(key("C2"), 2), RecordingReply())).status == "answered"
    await admin(engine, "channels all", key("C1"))
    assert (await engine.handle(said(key("C3"), 3), RecordingReply())).status == "answered"
    assert len(model_server.requests) == 2


async def test_direct_messages_switched_off_get_one_note_a_day(engine: Engine, model_server: FakeModelServer) -> None:
    dm = key("D0123")
    await admin(engine, "dms off", key("C1"))
    first, second = RecordingReply(), RecordingReply()
    assert (await engine.handle(said(dm, 1), first)).status == "refused"
    assert (await engine.handle(said(dm, 2), second)).status == "refused"
    assert first.notice == DMS_OFF_NOTE and second.notice is None and not model_server.requests
    assert (await engine.handle(said(key("C1"), 3), RecordingReply())).status == "answered"
    await admin(engine, "dms on", key("C1"))
    assert (await engine.handle(said(dm, 4), RecordingReply())).status == "answered"


async def test_on_discord_only_the_operators_switch_direct_messages(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(admins=frozenset({"OPERATOR"}))
    server = key("777", "4242", "discord")
    refused = await Commands.for_engine(engine).run(Caller(server, "MOD", True), "dms off")
    assert "only the bot's operators" in refused
    assert "now off" in await Commands.for_engine(engine).run(Caller(server, "OPERATOR", False), "dms off")
    dm = ConversationKey("discord", "dm", "555", "555")
    assert (await engine.handle(said(dm, 1, author="42"), RecordingReply())).status == "refused"


async def test_only_the_people_and_roles_allowed_are_answered(engine: Engine, model_server: FakeModelServer) -> None:
    here = key("C1")
    answer = await admin(engine, "users only <@U2|bo> U3", here)
    assert "<@U2>" in answer and "<@UADMIN>" in answer, "the admin who set it is kept in"
    stranger = RecordingReply()
    assert (await engine.handle(said(here, 1, author="U1"), stranger)).status == "refused"
    assert stranger.notice == USERS_NOTE and not model_server.requests
    again = RecordingReply()
    assert (await engine.handle(said(here, 11, author="U1"), again)).status == "refused" and again.notice is None
    assert (await engine.handle(said(here, 2, author="U2"), RecordingReply())).status == "answered"
    refused = await admin(engine, "users only @bo", here)
    assert "Nothing was changed" in refused and "`@name` reaches me as plain text" in refused
    assert "Nothing was changed" in await admin(engine, "users only @bo", key("777", "4242", "discord"))

    server = key("777", "4242", "discord")
    await admin(engine, "users only <@&9001>", server)
    assert (await engine.handle(said(server, 3, author="11", roles=("9001",)), RecordingReply())).status == "answered"
    assert (await engine.handle(said(server, 4, author="12", roles=("9002",)), RecordingReply())).status == "refused"
    await admin(engine, "users all", here)
    assert (await engine.handle(said(here, 5, author="U1"), RecordingReply())).status == "answered"


async def test_a_channel_model_reaches_the_model_server_there_only(engine: Engine, model_server: FakeModelServer) -> None:
    assert "now uses `gpt-4o`" in await admin(engine, "model channel set gpt-4o", key("C1"))
    await engine.handle(said(key("C1"), 1), RecordingReply())
    await engine.handle(said(key("C2"), 2), RecordingReply())
    assert [body["model"] for body in model_server.requests] == ["gpt-4o", engine.config.model]
    why = await Commands.for_engine(engine).run(Caller(key("C1"), "U1", False), "why")
    assert "Model: `gpt-4o` (set for this channel)." in why and "I answer in this channel" in why
    assert "Moderation: off" in why and "none a day" in why
    assert "workspace's model again" in await admin(engine, "model channel clear", key("C1"))
    await engine.handle(said(key("C1"), 3), RecordingReply())
    assert model_server.requests[-1]["model"] == engine.config.model


async def test_members_may_read_but_not_change_governance_settings(engine: Engine) -> None:
    member = Caller(key("C1"), "U1", False)
    commands = Commands.for_engine(engine)
    for command in ["budget workspace month 5", "budget user day 1", "fallback gpt-4o", "fallback off", "alerts here",
                    "model channel set gpt-4o", "channel off", "channels only", "dms off", "users only <@U1>"]:
        assert "Only workspace admins" in await commands.run(member, command), command
    assert not await engine.store.audit_log()
    for command in ["budget", "fallback", "alerts", "channel", "dms", "users", "why", "limits"]:
        assert "Only workspace admins" not in await commands.run(member, command), command
    help_text = await commands.run(member, "help")
    assert "`why`" in help_text and "`budget`" in help_text and "budget workspace month" not in help_text


async def test_every_change_is_audited_and_shown_by_limits(engine: Engine) -> None:
    here = key("C1")
    for command in ["budget workspace month 50", "budget workspace day 5.5", "budget user day 0.75",
                    "fallback gpt-4o-mini", "alerts here", "model channel set gpt-4o", "channel off", "channels only",
                    "dms off", "users only <@U2>"]:
        await admin(engine, command, here)
    audited = {(row["setting"], row["new_value"]) for row in await engine.store.audit_log()}
    assert audited == {
        ("budget_workspace_month", "50"), ("budget_workspace_day", "5.5"), ("budget_user_day", "0.75"),
        ("fallback_model", "gpt-4o-mini"), ("alerts_channel", "C1"), ("model", "gpt-4o"), ("answer", "off"),
        ("channels", "only"), ("dms", "off"), ("users", "U2 UADMIN"),
    }
    limits = await admin(engine, "limits", here)
    assert "$50.00 a month, $5.50 a day" in limits and "$0.75 a day" in limits and "`gpt-4o-mini`" in limits
    assert "this month: no budget (was $50.00)" in await admin(engine, "budget workspace month 0", here)
    assert "none a month, $5.50 a day" in await admin(engine, "limits", here)
    assert "Nothing was changed" in await admin(engine, "budget workspace month 12.3456789", here)
    assert "Nothing was changed" in await admin(engine, "budget user day ١٢", here)
    assert "Usage" in await admin(engine, "budget team week 5", here)
    assert "$12.50 (was no budget)" in await admin(engine, "budget workspace month $12.50", here)
    assert "$12.50 a month" in await admin(engine, "limits", here)
    assert "Nothing was changed" in await admin(engine, "budget workspace month $$3", here)


async def test_in_an_allow_listed_workspace_others_in_a_thread_stay_its_history(
    engine: Engine, model_server: FakeModelServer
) -> None:
    thread = ConversationKey("slack", "T1", "C1", "1700000000.000100")
    await admin(engine, "users only <@U2>", key("C1"))
    assert (await engine.handle(said(thread, 1, author="U2"), RecordingReply())).status == "answered"
    follow_up = Inbound(thread, "m2", "U1", "Bo", "what about Tuesdays?", addressed=Addressed.IF_CONTINUING)
    quiet = RecordingReply()
    assert (await engine.handle(follow_up, quiet)).status == "stored" and quiet.notice is None
    assert (await engine.handle(said(thread, 3, author="U2"), RecordingReply())).status == "answered"
    assert len(model_server.requests) == 2
    assert any("what about Tuesdays?" in str(m["content"]) for m in model_server.requests[-1]["messages"])
