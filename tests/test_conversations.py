"""The engine's promises about history, order and concurrency, through the fake model over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatbots.engine import EMPTY_NOTICE, TRUNCATION_MARK, TRUNCATION_NOTICE, Engine
from chatbots.types import Addressed, ConversationKey, Inbound
from tests.backend import dicts, value, rows as stored_rows
from tests.fakes.model_server import FakeModelServer
from tests.fakes.reply import RecordingReply

KEY = ConversationKey("test", "T1", "C1", "thread-1")


def said(
    text: str, n: int, *, key: ConversationKey = KEY, author: str = "U1", name: str = "Ada", addressed: Addressed = Addressed.YES
) -> Inbound:
    return Inbound(key, f"m{n}", author, name, text, addressed)


async def test_answer_streams_into_reply_and_both_turns_are_stored(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.chunk_delay = 0.12  # slower than the client gathers tokens, so each chunk shows on its own
    reply = RecordingReply()
    result = await engine.handle(said("hello", 1), reply)

    assert result.status == "answered"
    assert reply.started == 1 and reply.finished
    assert len(reply.pieces) > 1, "the answer should arrive in several streamed pieces"
    assert reply.text == "echo: hello"
    rows = dicts(engine.store, "SELECT role, text, author_id, platform_id, prompt_tokens, completion_tokens FROM messages ORDER BY id")
    assert [(r["role"], r["text"]) for r in rows] == [("user", "hello"), ("assistant", "echo: hello")]
    assert rows[0]["author_id"] == "U1" and rows[0]["platform_id"] == "m1"
    assert rows[1]["prompt_tokens"] == 22 and rows[1]["completion_tokens"] == len(reply.pieces)  # as the server reported
    assert model_server.requests[0]["stream_options"] == {"include_usage": True}


async def test_history_is_sent_in_order_after_the_system_instructions(engine: Engine, model_server: FakeModelServer) -> None:
    for n, text in enumerate(["first", "second", "third"]):
        await engine.handle(said(text, n), RecordingReply())

    messages = model_server.requests[-1]["messages"]
    assert messages[0]["role"] == "system"
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "first"), ("assistant", "echo: first"),
        ("user", "second"), ("assistant", "echo: second"),
        ("user", "third"),
    ]


async def test_each_turn_says_who_spoke_when_several_people_share_a_thread(engine: Engine, model_server: FakeModelServer) -> None:
    await engine.handle(said("I think we ship Friday", 1, author="U1", name="Ada"), RecordingReply())
    await engine.handle(said("Friday is too soon", 2, author="U2", name="Grace"), RecordingReply())

    users = [m["content"] for m in model_server.requests[-1]["messages"] if m["role"] == "user"]
    assert users == ["Ada: I think we ship Friday", "Grace: Friday is too soon"]


async def test_thread_chatter_is_context_but_gets_no_answer(engine: Engine, model_server: FakeModelServer) -> None:
    reply = RecordingReply()
    result = await engine.handle(said("lunch at noon?", 1, author="U2", name="Grace", addressed=Addressed.CONTEXT), reply)
    assert result.status == "stored"
    assert reply.started == 0 and not model_server.requests

    await engine.handle(said("what did Grace suggest?", 2), RecordingReply())
    users = [m["content"] for m in model_server.requests[0]["messages"] if m["role"] == "user"]
    assert users == ["Grace: lunch at noon?", "Ada: what did Grace suggest?"]


async def test_threads_do_not_share_history(engine: Engine, model_server: FakeModelServer) -> None:
    other = ConversationKey("test", "T1", "C1", "thread-2")
    await engine.handle(said("secret plan", 1), RecordingReply())
    await engine.handle(said("hi", 2, key=other), RecordingReply())
    assert "secret plan" not in str(model_server.requests[-1]["messages"])


async def test_history_survives_a_new_engine_on_the_same_database(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    first = make_engine()
    await first.handle(said("remember the number 42", 1), RecordingReply())
    await first.close()

    second = make_engine()
    await second.handle(said("what number?", 2), RecordingReply())
    contents = [m["content"] for m in model_server.requests[-1]["messages"]]
    assert "remember the number 42" in contents and "echo: remember the number 42" in contents


async def test_redelivered_message_is_answered_once(engine: Engine, model_server: FakeModelServer) -> None:
    first, again = RecordingReply(), RecordingReply()
    assert (await engine.handle(said("hello", 7), first)).status == "answered"
    assert (await engine.handle(said("hello", 7), again)).status == "duplicate"
    assert len(model_server.requests) == 1 and again.started == 0


async def test_two_quick_messages_in_one_conversation_are_answered_in_order(
    engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.queue("answer one", hold=True)
    model_server.queue("answer two")
    one, two = RecordingReply(), RecordingReply()
    first = asyncio.create_task(engine.handle(said("one", 1), one))
    second = asyncio.create_task(engine.handle(said("two", 2), two))
    await model_server.wait_for_requests(1)
    assert not second.done() and len(model_server.requests) == 1, "the second turn must wait for the first"
    model_server.release_held()
    await asyncio.gather(first, second)

    assert (one.text, two.text) == ("answer one", "answer two")
    assert [(m["role"], m["content"]) for m in model_server.requests[1]["messages"][1:]] == [
        ("user", "one"), ("assistant", "answer one"), ("user", "two"),
    ]


async def test_other_conversations_are_not_held_up_by_a_slow_one(engine: Engine, model_server: FakeModelServer) -> None:
    model_server.queue("slow answer", hold=True)
    model_server.queue("fast answer")
    slow, fast = RecordingReply(), RecordingReply()
    slow_turn = asyncio.create_task(engine.handle(said("slow", 1), slow))
    await model_server.wait_for_requests(1)

    other = ConversationKey("test", "T1", "C2", "thread-9")
    result = await engine.handle(said("fast", 2, key=other), fast)
    assert result.status == "answered" and fast.text == "fast answer"
    assert not slow_turn.done()
    model_server.release_held()
    await slow_turn
    assert slow.text == "slow answer"


async def test_oldest_history_is_dropped_to_fit_the_window_keeping_instructions_and_newest(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=400, max_output_tokens=100)
    for n in range(12):
        await engine.handle(said(f"message number {n} " + "word " * 20, n), RecordingReply())

    messages = model_server.requests[-1]["messages"]
    assert messages[0]["role"] == "system"
    assert messages[-1]["content"].startswith("message number 11")
    assert not any(m["content"].startswith("message number 0 ") for m in messages), "oldest turns must be trimmed"
    counter = engine.counter(engine.config.model)
    used = sum(counter.count_message(m["content"]) for m in messages)
    assert used <= 400 - 100, f"prompt of {used} tokens does not leave the output budget free"
    kept = [m["content"] for m in messages[1:]]
    assert len(kept) >= 3, "the window should still hold the most recent turns"


async def test_a_short_conversation_is_sized_without_loading_the_tokenizer(
    engine: Engine, model_server: FakeModelServer
) -> None:
    for n in range(3):
        await engine.handle(said(f"question {n}", n), RecordingReply())

    encoding = engine.counter(engine.config.model).limits.encoding
    assert engine.tokenizers.get(encoding) is None, "a conversation far inside its window needs no tokenizer"
    rows = stored_rows(engine.store, "SELECT role, text, tokens, tokens_exact FROM messages ORDER BY id")
    assert len(rows) == 6 and not any(exact for *_, exact in rows)
    for role, text, tokens, _ in rows:
        counted = f"Ada: {text}" if role == "user" else text
        assert tokens == len(counted.encode()) + 4, "a bound is the text's UTF-8 bytes plus the message overhead"


async def test_history_is_counted_for_real_once_upper_bounds_would_cut_it_short(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=400, max_output_tokens=100)
    for n in range(12):
        await engine.handle(said(f"message number {n} " + "word " * 20, n), RecordingReply())

    counter = engine.counter(engine.config.model)
    assert counter.exact, "the tokenizer loads once byte bounds no longer fit the window"
    kept = model_server.requests[-1]["messages"][1:]
    bounds = sum(len(m["content"].encode()) + 4 for m in kept)
    assert len(kept) >= 5 and bounds > 300, "exact counts must keep more history than the bounds could"
    assert sum(counter.count_message(m["content"]) for m in model_server.requests[-1]["messages"]) <= 300

    # A restart forgets the tokenizer: new turns are bounded again, and the window is made exact again when needed.
    restarted = make_engine(context_tokens=400, max_output_tokens=100)
    await restarted.handle(said("after the restart " + "word " * 20, 99), RecordingReply())
    after = model_server.requests[-1]["messages"][1:]
    assert after[-1]["content"].startswith("after the restart") and len(after) >= 5
    window_rows = stored_rows(restarted.store, "SELECT tokens_exact FROM messages ORDER BY id DESC LIMIT ?", len(after))
    assert all(exact for (exact,) in window_rows), "corrected sizes are kept, so the next start need not recount"


async def test_a_message_bigger_than_the_window_is_cut_with_a_visible_note(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(context_tokens=1000, max_output_tokens=200)
    huge = "lorem ipsum dolor sit amet " * 20_000  # ~100k tokens, 540 kB
    reply = RecordingReply()
    result = await engine.handle(said(huge, 1), reply)

    assert result.status == "answered"
    sent = model_server.requests[0]["messages"][-1]["content"]
    assert sent.endswith(TRUNCATION_MARK) and len(sent) < 10_000
    assert reply.text.endswith(TRUNCATION_NOTICE), "the person must be told their message was cut"
    stored = value(engine.store, "SELECT length(text) FROM messages WHERE role = 'user'")
    assert stored < 10_000, "only what the model could read is kept"


async def test_an_empty_message_gets_a_prompt_to_ask_and_no_model_call(engine: Engine, model_server: FakeModelServer) -> None:
    reply = RecordingReply()
    result = await engine.handle(said("   \n ", 1), reply)
    assert result.status == "empty" and reply.notice == EMPTY_NOTICE
    assert not model_server.requests


async def test_unknown_model_names_fall_back_to_default_limits(
    make_engine: Callable[..., Engine], model_server: FakeModelServer
) -> None:
    engine = make_engine(model="my-local/llama-3-8b-instruct")
    reply = RecordingReply()
    assert (await engine.handle(said("hi", 1), reply)).status == "answered"
    assert model_server.requests[0]["model"] == "my-local/llama-3-8b-instruct"
    assert engine.context_tokens(engine.counter("my-local/llama-3-8b-instruct")) == 8192


async def test_workspace_instructions_become_the_system_message(engine: Engine, model_server: FakeModelServer) -> None:
    workspace = await engine.store.workspace_id("test", "T1")
    await engine.store.set_setting(workspace, "instructions", "Answer like a pirate.")
    await engine.handle(said("hi", 1), RecordingReply())
    await engine.handle(said("hi", 2, key=ConversationKey("test", "T2", "C1", "x")), RecordingReply())
    assert model_server.requests[0]["messages"][0]["content"] == "Answer like a pirate."
    assert model_server.requests[1]["messages"][0]["content"] != "Answer like a pirate."


async def test_an_unmentioned_follow_up_is_answered_when_it_continues_the_exchange(
    engine: Engine, model_server: FakeModelServer
) -> None:
    await engine.handle(said("what is our deploy day?", 1), RecordingReply())
    follow_up = await engine.handle(said("and the time?", 2, addressed=Addressed.IF_CONTINUING), RecordingReply())
    assert follow_up.status == "answered", "the bot spoke last, so a reply in its thread is for it"


async def test_people_talking_among_themselves_in_the_bots_thread_are_context(
    engine: Engine, model_server: FakeModelServer
) -> None:
    await engine.handle(said("summarise the incident", 1), RecordingReply())
    await engine.handle(said("looks right to me", 2, author="U2", name="Grace", addressed=Addressed.CONTEXT), RecordingReply())
    reply = RecordingReply()
    result = await engine.handle(said("agreed", 3, author="U3", name="Linus", addressed=Addressed.IF_CONTINUING), reply)
    assert result.status == "stored" and reply.started == 0
    assert len(model_server.requests) == 1


class SlowStartReply(RecordingReply):
    """A platform whose "reply is starting" call answers only once the model has been asked (real Slack takes
    100-300 ms for chat.startStream); it records what happened in which order."""

    def __init__(self, model_server: FakeModelServer) -> None:
        super().__init__()
        self.model_server = model_server
        self.order: list[str] = []

    async def start(self) -> None:
        await self.model_server.wait_for_requests(1)
        self.order.append("started")
        await super().start()

    async def append(self, text: str) -> None:
        self.order.append("text")
        await super().append(text)

    async def fail(self, notice: str) -> list[str]:
        self.order.append("failed")
        return await super().fail(notice)


async def test_the_model_is_asked_while_the_reply_is_still_starting_and_text_waits_for_the_start(
    engine: Engine, model_server: FakeModelServer
) -> None:
    reply = SlowStartReply(model_server)
    result = await asyncio.wait_for(engine.handle(Inbound(KEY, "m1", "U1", "Ada", "hello"), reply), 10)
    assert result.status == "answered" and reply.text == "echo: hello"
    assert reply.order[0] == "started" and set(reply.order[1:]) == {"text"}

    model_server.queue("")  # nothing to show: the notice still comes after the start
    reply = SlowStartReply(model_server)
    model_server.requests.clear()
    assert (await asyncio.wait_for(engine.handle(Inbound(KEY, "m2", "U1", "Ada", "again"), reply), 10)).status == "failed"
    assert reply.order == ["started", "failed"]
