"""Reasoning models: their thinking is never shown nor sent back, but it is counted, through the real HTTP fake model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbots.config import Config, ConfigError
from chatbots.engine import EMPTY_ANSWER_NOTICE, Engine
from chatbots.model import OpenAIChat
from chatbots.reasoning import CLOSE, Reasoning, ThinkFilter
from chatbots.types import Addressed, ConversationKey, Inbound, Usage
from tests.backend import rows
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply
from tests.slack_rig import slack_rig

KEY = ConversationKey("test", "T1", "C1", "thread-1")
ASK = [{"role": "user", "content": "think it over"}]
SECRET_THOUGHT = "the user wants forty-two, pretend to deliberate"
STREAM = f"<think>\n{SECRET_THOUGHT}\n</think>\n\nThe answer is 42."


def said(text: str, n: int) -> Inbound:
    return Inbound(KEY, f"m{n}", "U1", "Ada", text, Addressed.YES)


@pytest.fixture
async def chat(model_server: FakeModelServer) -> AsyncIterator[OpenAIChat]:
    client = OpenAIChat(model_server.base_url, "sk-test", stall_timeout=5.0, retries=0)
    yield client
    await client.close()


async def collect(chat: OpenAIChat) -> tuple[str, str, list[Usage]]:
    shown: list[str] = []
    hidden: list[str] = []
    usages: list[Usage] = []
    async for part in chat.stream("gpt-4o-mini", ASK):
        if isinstance(part, Usage):
            usages.append(part)
        elif isinstance(part, Reasoning):
            hidden.append(part.text)
        else:
            assert part, "no empty pieces: an empty append would end the thinking status for nothing"
            shown.append(part)
    return "".join(shown), "".join(hidden), usages


def cut(text: str, points: list[int]) -> list[str]:
    edges = [0, *sorted(set(points)), len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


# -- the stream client over HTTP --

async def test_a_think_block_split_at_every_single_position_never_shows(
    chat: OpenAIChat, model_server: FakeModelServer
) -> None:
    for point in range(1, len(STREAM)):
        model_server.queue(pieces=cut(STREAM, [point]))
        shown, hidden, _ = await collect(chat)
        assert (shown, hidden) == ("The answer is 42.", f"\n{SECRET_THOUGHT}\n"), point


@given(points=st.lists(st.integers(min_value=1, max_value=80), max_size=12),
       before=st.sampled_from(["", "Intro. "]), after=st.sampled_from(["", " x < y and <b>bold</b> <thin"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_think_blocks_anywhere_split_anywhere_show_exactly_the_rest(
    chat: OpenAIChat, model_server: FakeModelServer, points: list[int], before: str, after: str
) -> None:
    text = f"{before}<think>{SECRET_THOUGHT}</think>Visible{after}<think>more</think> end"
    model_server.queue(pieces=cut(text, [p for p in points if p < len(text)]))
    shown, hidden, _ = await collect(chat)
    assert shown == f"{before}Visible{after} end"
    assert hidden == SECRET_THOUGHT + "more"


async def test_an_unclosed_think_hides_everything_after_it(chat: OpenAIChat, model_server: FakeModelServer) -> None:
    model_server.queue(pieces=["Sure. <thi", "nk>still going", " and going </thi"])
    shown, hidden, _ = await collect(chat)
    assert shown == "Sure. "
    assert hidden == "still going and going </thi"


async def test_a_tag_that_never_completes_is_just_text(chat: OpenAIChat, model_server: FakeModelServer) -> None:
    model_server.queue(pieces=["use the <", "thin", "g> tag"])
    assert (await collect(chat))[:2] == ("use the <thing> tag", "")
    model_server.queue(pieces=["ends with <th"])
    assert (await collect(chat))[:2] == ("ends with <th", "")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_fields_are_kept_apart(chat: OpenAIChat, model_server: FakeModelServer, field: str) -> None:
    model_server.queue("Forty-two.", reasoning=["Let me ", "think."], reasoning_field=field)
    shown, hidden, _ = await collect(chat)
    assert (shown, hidden) == ("Forty-two.", "Let me think.")


async def test_reasoning_in_a_shape_other_than_text_is_ignored(chat: OpenAIChat, model_server: FakeModelServer) -> None:
    model_server.queue("Fine.", reasoning=[{"type": "summary", "items": []}, None], reasoning_field="reasoning")  # type: ignore[list-item]
    assert (await collect(chat))[:2] == ("Fine.", "")


async def test_reported_usage_includes_reasoning_tokens(chat: OpenAIChat, model_server: FakeModelServer) -> None:
    model_server.queue("Forty-two.", chunks=2, reasoning=["hmm"], reasoning_tokens=300)
    *_, [usage] = await collect(chat)
    assert usage.completion_tokens == 302  # OpenAI counts reasoning inside completion_tokens: not added twice


def test_usage_from_a_server_that_counts_reasoning_apart() -> None:
    from chatbots.model import _usage

    apart = {"prompt_tokens": 10, "completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 300}}
    assert _usage(apart).completion_tokens == 305
    in_total = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 315}
    assert _usage(in_total).completion_tokens == 305
    openai = {"prompt_tokens": 10, "completion_tokens": 305, "total_tokens": 315,
              "completion_tokens_details": {"reasoning_tokens": 300}}
    assert _usage(openai).completion_tokens == 305


async def test_reasoning_effort_is_sent_only_when_set(model_server: FakeModelServer, settings: Config) -> None:
    for effort in (None, "high"):
        client = OpenAIChat.from_settings(replace(settings, reasoning_effort=effort))
        try:
            await collect(client)
        finally:
            await client.close()
    assert "reasoning_effort" not in model_server.requests[0]
    assert model_server.requests[1]["reasoning_effort"] == "high"


async def test_a_model_that_refuses_reasoning_effort_is_answered_without_it(
    model_server: FakeModelServer, settings: Config
) -> None:
    """One CHATBOTS_REASONING_EFFORT for every workspace: a workspace on a model that does not reason still gets answers."""
    model_server.effort_models = {"o3-mini"}
    client = OpenAIChat.from_settings(replace(settings, reasoning_effort="high", model_retries=0))
    try:
        shown, _, _ = await collect(client)
        assert shown == "echo: think it over"
        await collect(client)
        async for _ in client.stream("o3-mini", ASK):
            pass
    finally:
        await client.close()
    sent = [(request["model"], request.get("reasoning_effort")) for request in model_server.requests]
    assert sent == [("gpt-4o-mini", "high"), ("gpt-4o-mini", None), ("gpt-4o-mini", None), ("o3-mini", "high")], (
        "refused once, then left out for that model only"
    )


def test_reasoning_effort_setting() -> None:
    assert Config.from_env({}).reasoning_effort is None
    assert Config.from_env({"CHATBOTS_REASONING_EFFORT": " Medium "}).reasoning_effort == "medium"
    with pytest.raises(ConfigError, match="^CHATBOTS_REASONING_EFFORT must be low, medium or high, got 'max'$"):
        Config.from_env({"CHATBOTS_REASONING_EFFORT": "max"})


# -- the engine: what people see, what is stored and sent back, what is counted --

async def test_the_next_turn_sends_back_only_the_visible_answer(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue(pieces=cut(STREAM, [3, 20, 50]), reasoning=["field thoughts"])
    reply = RecordingReply()
    result = await engine.handle(said("what is the answer?", 1), reply)
    assert result.status == "answered" and reply.text == result.answer == "The answer is 42."
    await engine.handle(said("and why?", 2), RecordingReply())
    sent = json.dumps(model_server.requests[-1]["messages"])
    assert "The answer is 42." in sent
    assert SECRET_THOUGHT not in sent and "field thoughts" not in sent and "think>" not in sent
    stored = [row[0] for row in rows(engine.store, "SELECT text FROM messages WHERE role = 'assistant' ORDER BY id")]
    assert stored[0] == "The answer is 42."


async def test_an_answer_that_is_only_reasoning_gets_the_empty_answer_notice(
    engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.queue(pieces=["<think>I could say", " something</think>\n\n"], reasoning=["or not"])
    reply = RecordingReply()
    result = await engine.handle(said("hello?", 1), reply)
    assert result.status == "failed"
    assert reply.pieces == [] and reply.notice == EMPTY_ANSWER_NOTICE


async def test_without_reported_usage_the_estimate_counts_the_hidden_reasoning(
    engine: Engine, model_server: FakeModelServer
) -> None:
    thinking = "step one, step two, step three, and a long careful check of every step " * 5
    model_server.queue(pieces=[f"<think>{thinking}</think>", "Done."], reasoning=["also this"], usage=False)
    result = await engine.handle(said("count me", 1), RecordingReply())
    assert result.usage is not None and result.usage.estimated
    counter = engine.counter("gpt-4o-mini")
    assert result.usage.completion_tokens == counter.count("Done.") + counter.count("also this" + thinking)


async def test_reasoning_keeps_a_stream_alive_but_silence_still_times_out(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(stall_timeout=0.5, model_retries=0)
    model_server.chunk_delay = 0.2  # each chunk well inside the stall timeout, the whole stream well past it
    model_server.queue(pieces=["<think>a", "b", "c", "d", "e</think>", "Answer."])
    reply = RecordingReply()
    assert (await engine.handle(said("slow thinker", 1), reply)).status == "answered"
    assert reply.text == "Answer."
    model_server.chunk_delay = 0
    model_server.queue(pieces=["<think>a", "b", "never ends"], stall_after=2)
    reply = RecordingReply()
    assert (await engine.handle(said("stuck thinker", 2), reply)).status == "failed"
    assert reply.text == "" and reply.notice is not None and "too long" in reply.notice


async def test_a_long_think_keeps_the_answers_lease_fresh(
    engine: Engine, model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas judge a streaming answer cut off when its row goes unsaved: reasoning alone must save it too."""
    monkeypatch.setattr("chatbots.engine.PARTIAL_SAVE_INTERVAL", 0.05)
    saved: list[str] = []
    save_partial = engine.store.save_partial

    async def spy(message_id: int, text: str) -> None:
        saved.append(text)
        await save_partial(message_id, text)

    monkeypatch.setattr(engine.store, "save_partial", spy)
    model_server.chunk_delay = 0.1
    model_server.queue(pieces=["<think>a", "b", "c", "</think>Answer."])
    assert (await engine.handle(said("think long", 1), RecordingReply())).status == "answered"
    assert "" in saved, "saved while only reasoning had arrived"


def whole(text: str) -> tuple[str, str]:
    """What the filter must make of text, worked out on the whole text at once."""
    visible: list[str] = []
    hidden: list[str] = []
    position, inside = 0, False
    while True:
        tag = "</think>" if inside else "<think>"
        found = text.find(tag, position)
        (hidden if inside else visible).append(text[position:] if found < 0 else text[position:found])
        if found < 0:
            break
        position, inside = found + len(tag), not inside
    shown = visible[0]
    for segment in visible[1:]:  # after a block, the answer starts at its first non-blank character
        shown += segment if shown.strip() else segment.lstrip()
    return shown, "".join(hidden)


@given(parts=st.lists(st.sampled_from(["<think>", "</think>", "<", "<th", "ink>", "</", "t", "a b", " ", "\n", ">"])),
       points=st.lists(st.integers(min_value=1, max_value=200), max_size=20))
def test_the_filter_agrees_with_reading_the_whole_text(parts: list[str], points: list[int]) -> None:
    text = "".join(parts)
    thoughts = ThinkFilter()
    shown: list[str] = []
    hidden: list[str] = []
    for piece in [*cut(text, [p for p in points if p < len(text)]), None]:
        visible, thought = thoughts.feed(piece) if piece is not None else thoughts.end()
        shown.append(visible)
        hidden.append(thought)
    assert ("".join(shown), "".join(hidden)) == whole(text)


def test_the_filter_is_linear_in_the_answer() -> None:
    """One character at a time through a long answer full of `<`: each feed looks at the new piece and at most a
    tag's length kept back from the last, never at the answer so far (a rescan per chunk would be quadratic)."""
    thoughts = ThinkFilter()
    text = "<think>" + "a<b</think" * 20_000 + "</think>" + "x<y<thin" * 20_000
    shown = []
    for char in text:
        visible, _ = thoughts.feed(char)
        shown.append(visible)
        assert len(thoughts._held) < len(CLOSE)
    shown.append(thoughts.end()[0])
    assert "".join(shown) == "x<y<thin" * 20_000


# -- end to end on Slack --

async def test_nothing_of_the_reasoning_reaches_slack(settings: Config) -> None:
    async with slack_rig(settings, "http") as rig:
        rig.model.chunk_delay = 0.4  # reasoning alone for longer than the thinking delay: the status shows
        rig.model.queue(pieces=["<think>", SECRET_THOUGHT[:10], SECRET_THOUGHT[10:] + "</th", "ink>\n\nThe answer is 42."],
                        reasoning=["hidden field reasoning"])
        ts = await rig.mention("what is the answer?")
        [answer] = await rig.reply_in("C1", ts)
        assert answer.text == "The answer is 42."
        [status] = rig.slack.calls_to("assistant.threads.setStatus")  # shown while only reasoning arrives
        assert status.t < rig.slack.calls_to("chat.startStream")[0].t
        sent = json.dumps([call.args for call in rig.slack.calls])
        for secret in (SECRET_THOUGHT[:10], SECRET_THOUGHT[10:], "hidden field reasoning", "think>"):
            assert secret not in sent
