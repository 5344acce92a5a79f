"""A model that errors, rate-limits or stalls ends in a friendly notice and leaves history consistent."""

from __future__ import annotations

from collections.abc import Callable

from chatbots.engine import Engine
from chatbots.prompt import DEFAULT_INSTRUCTIONS
from chatbots.types import ConversationKey, Inbound
from tests.backend import dicts, rows
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply

KEY = ConversationKey("test", "T1", "C1", "t1")


def said(text: str, n: int) -> Inbound:
    return Inbound(KEY, f"m{n}", "U1", "Ada", text)


def stored(engine: Engine) -> list[tuple[str, str, str]]:
    return [(r["role"], r["text"], r["status"]) for r in dicts(engine.store, "SELECT role, text, status FROM messages ORDER BY id")]


async def test_rate_limit_is_retried_after_retry_after(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue(status=429, retry_after=0.05)
    model_server.queue("made it")
    reply = RecordingReply()
    result = await engine.handle(said("hi", 1), reply)
    assert result.status == "answered" and reply.text == "made it"
    assert len(model_server.requests) == 2
    waited = model_server.request_times[1] - model_server.request_times[0]
    assert waited >= 0.05, f"retried after {waited:.3f}s, before the server's Retry-After"


async def test_server_errors_are_retried_with_backoff(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue(status=500)
    model_server.queue(status=503)
    model_server.queue("recovered")
    reply = RecordingReply()
    assert (await engine.handle(said("hi", 1), reply)).status == "answered"
    assert reply.text == "recovered" and len(model_server.requests) == 3


async def test_persistent_failure_gives_a_friendly_notice_and_keeps_the_question(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model_retries=1)
    for _ in range(2):
        model_server.queue(status=429, retry_after=0.01)
    reply = RecordingReply()
    result = await engine.handle(said("are you there?", 1), reply)

    assert result.status == "failed"
    assert reply.notice is not None and "too many requests" in reply.notice
    assert "Traceback" not in reply.notice and "429" not in reply.notice
    assert stored(engine) == [("user", "are you there?", "ok")]

    follow_up = RecordingReply()
    assert (await engine.handle(said("and now?", 2), follow_up)).status == "answered"
    users = [m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["are you there?", "and now?"], "the unanswered question stays in the history"


async def test_a_stalled_stream_ends_with_an_error_and_keeps_what_was_shown(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(stall_timeout=0.3)
    model_server.queue("one, two, tri, for, fiv, six, ", chunks=6, stall_after=2)
    reply = RecordingReply()
    result = await engine.handle(said("tell me", 1), reply)

    assert result.status == "failed"
    assert reply.text == "one, two, " and reply.notice is not None and "too long" in reply.notice
    assert stored(engine) == [("user", "tell me", "ok"), ("assistant", "one, two, ", "interrupted")]
    assert (await engine.handle(said("again", 2), RecordingReply())).status == "answered"


async def test_a_model_that_never_starts_answering_times_out(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(stall_timeout=0.3, model_retries=0)
    model_server.queue("never", stall_after=0)
    reply = RecordingReply()
    assert (await engine.handle(said("hello?", 1), reply)).status == "failed"
    assert reply.text == "" and reply.notice is not None


async def test_an_error_inside_the_stream_is_reported_not_raised(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue("alpha beta gamma", chunks=3, error_after=1)
    reply = RecordingReply()
    assert (await engine.handle(said("go", 1), reply)).status == "failed"
    assert reply.text == "alpha " and reply.notice is not None


async def test_missing_usage_is_estimated_with_the_tokenizer(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue("a short answer", usage=False)
    result = await engine.handle(said("count me", 1), RecordingReply())
    assert result.usage is not None and result.usage.estimated
    counter = engine.counter("gpt-4o-mini")
    assert result.usage.completion_tokens == counter.count("a short answer")
    # Counted for real, not the byte bounds the turn was sized with before the tokenizer loaded.
    assert result.usage.prompt_tokens == counter.count_message(DEFAULT_INSTRUCTIONS) + counter.count_message("Ada: count me") + 3
    [row] = rows(engine.store, "SELECT prompt_tokens, completion_tokens FROM messages WHERE role = 'assistant'")
    assert row == (result.usage.prompt_tokens, result.usage.completion_tokens)


async def test_an_unreachable_server_is_a_clear_notice(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(openai_base_url="http://127.0.0.1:9/v1", model_retries=0)
    reply = RecordingReply()
    assert (await engine.handle(said("hi", 1), reply)).status == "failed"
    assert reply.notice is not None and "can't reach" in reply.notice
