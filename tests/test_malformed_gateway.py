"""Property-based: malformed Discord gateway messages cost that message only; the bot keeps serving."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbots.config import Config
from tests.discord_rig import ALICE, GENERAL, DiscordRig, discord_rig

odd_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "<@1>", "\u202e\u0000\ufeff", "x" * 5000, "🙂" * 2000, "```"]
)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)
TOP_LEVEL = ["id", "channel_id", "guild_id", "author", "member", "content", "timestamp", "mentions", "type",
             "mention_roles", "attachments", "embeds", "flags", "referenced_message", "message_reference"]
AUTHOR = ["id", "username", "bot", "discriminator", "global_name"]


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """Edits to apply to a valid MESSAGE_CREATE: delete a field, or give it a value of another shape."""
    edits = []
    for field in draw(st.lists(st.sampled_from(TOP_LEVEL), max_size=4, unique=True)):
        edits.append(("top", field, draw(st.just(None) | junk)))
    for field in draw(st.lists(st.sampled_from(AUTHOR), max_size=2, unique=True)):
        edits.append(("author", field, draw(st.just(None) | junk)))
    return edits


def mutate(template: dict[str, Any], edits: list[tuple[str, str, Any]]) -> dict[str, Any]:
    payload = copy.deepcopy(template)
    for where, field, value in edits:
        target = payload if where == "top" else payload.get("author")
        if not isinstance(target, dict):
            continue
        if value is None:
            target.pop(field, None)
        else:
            target[field] = value
    return payload


async def still_connected(rig: DiscordRig) -> None:
    """A message of the bot's own, sent after the junk, comes through: the gateway loop survived the junk."""
    seen = asyncio.Event()

    def watch(outcome: str) -> None:
        if outcome == "own":
            seen.set()

    rig.service.observers.append(watch)
    try:
        await rig.fake.send_message(GENERAL, rig.fake.bot_id, "probe")
        await asyncio.wait_for(seen.wait(), 5)
    finally:
        rig.service.observers.remove(watch)
    assert rig.service._task is not None and not rig.service._task.done()


@pytest.fixture
async def rig(settings: Config) -> AsyncIterator[DiscordRig]:
    async with discord_rig(settings) as rig:
        rig.template = await rig.fake.send_message(GENERAL, ALICE, "hello", mentions_bot=True)  # type: ignore[attr-defined]
        await rig.next_outcome()
        yield rig


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=mutations(), event=st.sampled_from(["MESSAGE_CREATE", "MESSAGE_UPDATE"]))
async def test_malformed_messages_never_take_the_bot_down(rig: DiscordRig, edits: list, event: str) -> None:
    await rig.fake.dispatch(event, mutate(rig.template, edits))  # type: ignore[attr-defined]
    await still_connected(rig)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.dictionaries(st.sampled_from(["id", "type", "data", "token", "channel_id", "guild_id", "member",
                                             "user", "message_id", "emoji", "user_id"]), junk, max_size=6),
       event=st.sampled_from(["INTERACTION_CREATE", "MESSAGE_REACTION_ADD", "MESSAGE_DELETE"]))
async def test_malformed_interactions_and_reactions_are_dropped(rig: DiscordRig, data: dict, event: str) -> None:
    await rig.fake.dispatch(event, data)
    await still_connected(rig)


async def test_after_a_storm_of_junk_the_bot_still_answers(rig: DiscordRig) -> None:
    for edits in ([("top", "author", None)], [("top", "channel_id", {"x": 1})], [("author", "id", "not-a-number")],
                  [("top", "content", ["a", "list"])], [("top", "mentions", "everyone")]):
        await rig.fake.dispatch("MESSAGE_CREATE", mutate(rig.template, edits))  # type: ignore[attr-defined]
    await rig.mention("still there?")
    outcome = await rig.next_outcome()
    while outcome != "turn:answered":  # junk that parsed may have produced outcomes of its own
        outcome = await rig.next_outcome()
    assert rig.fake.bot_contents(GENERAL)[-1] == "echo: still there?"
    assert rig.service._task is not None and not rig.service._task.done(), "the gateway connection is alive"
