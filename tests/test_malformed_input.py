"""Property-based: whatever arrives at the Slack endpoint, it answers 2xx/4xx, never 5xx, and keeps serving."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbots.config import Config
from tests.backend import database_url
from tests.fakes.slack import event_callback, post_signed, slash_command_form
from tests.slack_rig import SECRET, SlackRig, slack_rig

odd_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=50) | st.sampled_from(
    ["", " ", "<@UBOT>", "<@UBOT|bot> hi", "\u202e\u0000\ufeff", "x" * 20_000, "🙂" * 2000, "&lt;&amp;", "```"]
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
)
slack_file = st.fixed_dictionaries(
    {},
    optional={
        "id": odd_text | anything,
        "name": odd_text | anything,
        "title": odd_text | anything,
        "mimetype": st.sampled_from(["image/png", "application/pdf", "text/plain", ""]) | anything,
        "size": st.integers() | anything,
        "mode": st.sampled_from(["hosted", "tombstone", "hidden_by_limit", "external"]) | anything,
        "is_external": anything,
        "file_access": st.sampled_from(["visible", "check_file_info"]) | anything,
        # Never a real host: no test reaches the internet. Off-list addresses are refused before any request.
        "url_private_download": st.sampled_from(["http://127.0.0.1:1/x.png", "not a url", "http://[::1", ""]) | anything,
        "url_private": st.sampled_from(["http://127.0.0.1:1/x.png", "//127.0.0.1:1/x"]) | anything,
    },
)
event_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["message", "app_mention", "reaction_added", "reaction_removed", "tokens_revoked"]) | anything,
        "subtype": st.sampled_from(["message_changed", "message_deleted", "bot_message", "file_share", "channel_join"]) | anything,
        "channel": st.sampled_from(["C1", "D1"]) | anything,
        "channel_type": st.sampled_from(["channel", "im", "group"]) | anything,
        "user": st.sampled_from(["U1", "UBOT"]) | anything,
        "bot_id": anything,
        "text": odd_text | anything,
        "ts": st.sampled_from(["1700000000.000100", "not-a-ts"]) | anything,
        "thread_ts": st.sampled_from(["1700000000.000100"]) | anything,
        "item": anything,
        "reaction": st.sampled_from(["+1", "-1", "thumbsup"]) | anything,
        "tokens": anything,
        "files": st.lists(slack_file, max_size=3) | anything,
    },
)
def envelope(event: dict[str, Any], team: Any = "T1") -> dict[str, Any]:
    """An Events API body around any event, built by hand: the event may be too broken for the fake's builder."""
    return {"type": "event_callback", "team_id": team, "api_app_id": "A1", "event": event,
            "event_id": f"Ev{abs(hash(repr(event)))}", "event_time": 1700000000}


bodies = (
    st.builds(envelope, event_fields)
    | st.dictionaries(odd_text, anything, max_size=4)
    | st.builds(envelope, event_fields, anything)
)


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Config:
    return Config(openai_api_key="sk-test", db_path=str(tmp_path_factory.mktemp("fuzz") / "bot.db"),
                  database_url=database_url(request), moderation=False)


@pytest.fixture
async def rig(shared_settings: Config) -> AsyncIterator[SlackRig]:
    async with slack_rig(shared_settings, "http") as rig:
        yield rig


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies)
async def test_any_signed_event_body_gets_a_non_5xx_answer(rig: SlackRig, body: dict[str, Any]) -> None:
    status, _ = await post_signed(None, rig.events_url, json.dumps(body, default=str), SECRET)
    assert status < 500


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fields=st.dictionaries(st.sampled_from(["team_id", "user_id", "channel_id", "text", "command"]), odd_text), raw=st.binary(max_size=200))
async def test_any_slash_command_form_or_raw_bytes_gets_a_non_5xx_answer(rig: SlackRig, fields: dict[str, str], raw: bytes) -> None:
    form = {**slash_command_form("T1", "U1", "C1", "help"), **fields}
    status, _ = await post_signed(None, rig.events_url, form, SECRET, json_body=False)
    assert status < 500
    status, _ = await post_signed(None, rig.events_url, raw, SECRET)
    assert status < 500


async def test_the_bot_still_answers_after_a_storm_of_junk(rig: SlackRig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    junk = [{"event": {"type": "message", "channel": ["C1"], "ts": {"x": 1}, "user": None}}, {"event": "message"}]
    for body in junk:
        status, _ = await post_signed(None, rig.events_url, {**event_callback("T1", {}), **body}, SECRET)
        assert status < 500
    ts = await rig.mention("still alive?")
    [answer] = await rig.reply_in("C1", ts)
    assert answer.text == "echo: still alive?"
    ours = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("chatbots", "adapters"))]
    assert not ours
