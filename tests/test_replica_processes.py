"""Two `chatbots run` processes on one PostgreSQL database behave as one Slack bot (HTTP mode, behind a balancer)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import psycopg
import pytest

from tests.fakes.model_server import FakeModelServer
from tests.fakes.slack import FakeSlack, app_mention, channel_message, event_callback, next_ts, post_signed
from tests.postgres import empty
from tests.processes import bot_process, free_port

SECRET = "replicas-signing-secret"


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[FakeSlack, FakeModelServer, list[int]]]:
    """Two replicas in Slack HTTP mode, started at once (they race to migrate a fresh schema)."""
    empty(postgres_url)
    async with FakeSlack() as slack, FakeModelServer() as model, AsyncExitStack() as stack:
        env = {"SLACK_BOT_TOKEN": "xoxb-replicas", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url,
               "OPENAI_BASE_URL": model.base_url, "DATABASE_URL": postgres_url}
        ports = [free_port(), free_port()]
        await asyncio.gather(*(stack.enter_async_context(bot_process(env, port)) for port in ports))
        yield slack, model, ports


async def deliver(port: int, body: dict) -> None:
    status, _ = await post_signed(None, f"http://127.0.0.1:{port}/slack/events", body, SECRET)
    assert status == 200


async def shown(slack: FakeSlack, thread_ts: str, text: str) -> None:
    await slack.wait_for(lambda: any(m.text == text for m in slack.messages("C1") if m.thread_ts == thread_ts),
                         timeout=15, message=f"{text!r}")


async def test_one_event_reaching_both_replicas_at_once_is_answered_once(
    replicas: tuple[FakeSlack, FakeModelServer, list[int]],
) -> None:
    slack, model, ports = replicas
    ts = next_ts()
    body = event_callback("T1", app_mention("C1", "U1", "<@UBOT> once please", ts=ts), event_id="EvTwice")
    await asyncio.gather(*(deliver(port, body) for port in ports))
    await shown(slack, ts, "echo: once please")
    later = next_ts()  # a later event through both: once it is answered, the first is long settled
    await asyncio.gather(*(deliver(port, event_callback("T1", app_mention("C1", "U1", "<@UBOT> next", ts=later),
                                                        event_id="EvNext")) for port in ports))
    await shown(slack, later, "echo: next")
    answers = [m for m in slack.messages("C1") if m.thread_ts == ts]
    assert [m.text for m in answers] == ["echo: once please"]
    assert sum(1 for request in model.requests if "once please" in str(request["messages"])) == 1


async def test_a_conversation_continues_on_whichever_replica_gets_the_next_message(
    replicas: tuple[FakeSlack, FakeModelServer, list[int]],
) -> None:
    slack, model, ports = replicas
    ts = next_ts()
    await deliver(ports[0], event_callback("T1", app_mention("C1", "U1", "<@UBOT> my code word is teal", ts=ts)))
    await shown(slack, ts, "echo: my code word is teal")
    await deliver(ports[1], event_callback("T1", channel_message("C1", "U1", "what was it?", thread_ts=ts)))
    await shown(slack, ts, "echo: what was it?")
    prompt = str(model.requests[-1]["messages"])
    assert "my code word is teal" in prompt and "echo: my code word is teal" in prompt, "the other replica's turns"


async def test_socket_mode_replicas_each_open_a_connection_and_a_redelivery_to_the_other_is_answered_once(
    postgres_url: str,
) -> None:
    empty(postgres_url)
    async with FakeSlack() as slack, FakeModelServer() as model, AsyncExitStack() as stack:
        env = {"SLACK_BOT_TOKEN": "xoxb-replicas", "SLACK_APP_TOKEN": "xapp-replicas", "SLACK_API_URL": slack.api_url,
               "OPENAI_BASE_URL": model.base_url, "DATABASE_URL": postgres_url}
        await asyncio.gather(*(stack.enter_async_context(bot_process(env, free_port())) for _ in range(2)))
        await slack.wait_for(lambda: slack.socket_connections == 2, 30, "a connection from each replica")
        ts = next_ts()
        body = event_callback("T1", app_mention("C1", "U1", "<@UBOT> over the socket", ts=ts), event_id="EvSock")
        await slack.socket_send_event(body, connection=0)
        await slack.socket_send_event(body, retry_attempt=1, retry_reason="timeout", connection=1)
        await shown(slack, ts, "echo: over the socket")
        later = next_ts()
        await slack.socket_send_event(
            event_callback("T1", app_mention("C1", "U1", "<@UBOT> and then", ts=later), event_id="EvSock2"), connection=1)
        await shown(slack, later, "echo: and then")
        assert [m.text for m in slack.messages("C1") if m.thread_ts == ts] == ["echo: over the socket"]
        assert sum(1 for request in model.requests if "over the socket" in str(request["messages"])) == 1


async def test_a_replica_killed_midway_leaves_an_answer_the_next_message_marks_interrupted_at_once(
    postgres_url: str,
) -> None:
    """The next message on another replica holds the conversation's lock, so no live turn can still be streaming
    that answer: it is claimed at once, without waiting out the lease, and the conversation carries on."""
    empty(postgres_url)
    async with FakeSlack() as slack, FakeModelServer(chunk_delay=0.2) as model:
        env = {"SLACK_BOT_TOKEN": "xoxb-replicas", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url,
               "OPENAI_BASE_URL": model.base_url, "DATABASE_URL": postgres_url}
        model.queue("a long and slow answer that this replica will never finish " * 3, chunks=60)
        ts, doomed_port, survivor_port = next_ts(), free_port(), free_port()
        async with bot_process(env, survivor_port), bot_process(env, doomed_port) as doomed:
            await deliver(doomed_port, event_callback("T1", app_mention("C1", "U1", "<@UBOT> explain everything", ts=ts)))
            await slack.wait_for_call("chat.startStream")
            await until_saved(postgres_url)  # a partial save: the answer is midway
            doomed.kill()
            await doomed.wait()
            model.chunk_delay = 0
            await deliver(survivor_port, event_callback("T1", channel_message("C1", "U1", "still there?", thread_ts=ts)))
            await shown(slack, ts, "echo: still there?")
        with psycopg.connect(postgres_url) as conn:
            statuses = conn.execute("SELECT role, status FROM messages ORDER BY id").fetchall()
        assert statuses == [("user", "ok"), ("assistant", "interrupted"), ("user", "ok"), ("assistant", "ok")]
        history = [m["content"] for m in model.requests[-1]["messages"][1:]]
        assert history[0] == "explain everything" and history[1].endswith("[This answer was interrupted.]")
        assert len(slack.calls_to("chat.startStream")) == 2, "one stream per question: nothing posted twice"


async def until_saved(postgres_url: str) -> None:
    """Wait until the streaming answer's shown text has been saved once (there is no event to wait on)."""
    async with asyncio.timeout(15):
        while True:
            with psycopg.connect(postgres_url) as conn:
                if conn.execute("SELECT 1 FROM messages WHERE status = 'streaming' AND text != ''").fetchone():
                    return
            await asyncio.sleep(0.1)
