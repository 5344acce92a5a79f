"""Under load a flowing stream stops reading its socket between reads: the answer, its errors and the pool stay right.

These run the paused path for one stream by setting batch_above below the streams in flight, over real HTTP to the
fake model. `Watched` records each transport the client chose to pause, so the tests can tell the path was taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from chatbots.model import ModelError, OpenAIChat, _parse
from chatbots.types import Usage
from tests.fakes.model_server import FakeModelServer

ASK = [{"role": "user", "content": "count for me"}]
ANSWER = "".join(f"w{n:02d} " for n in range(60))


class Watched(OpenAIChat):
    """OpenAIChat that remembers the transports it paused, and signals the first pause."""

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(base_url, "sk-test", **options)
        self.paused: list[asyncio.Transport] = []
        self.first_pause = asyncio.Event()

    def _pausable(self, response: aiohttp.ClientResponse) -> asyncio.Transport | None:
        transport = super()._pausable(response)
        if transport is not None:
            self.paused.append(transport)
            self.first_pause.set()
        return transport


@pytest.fixture
async def chat(model_server: FakeModelServer) -> AsyncIterator[Watched]:
    client = Watched(model_server.base_url, stall_timeout=5.0, retries=0, batch_above=0)
    yield client
    await client.close()


async def collect(chat: OpenAIChat) -> tuple[list[str], list[Usage]]:
    texts: list[str] = []
    usages: list[Usage] = []
    async for part in chat.stream("gpt-4o-mini", ASK):
        if isinstance(part, Usage):
            usages.append(part)
        else:
            texts.append(part)
    return texts, usages


def settled(transports: list[asyncio.Transport]) -> bool:
    """Every paused transport is reading again, or closed: none can sit paused in the pool."""
    return all(t.is_closing() or t.is_reading() for t in transports)


async def test_a_paused_stream_delivers_the_whole_answer_in_fewer_reads(chat: Watched, model_server: FakeModelServer) -> None:
    model_server.chunk_delay = 0.005
    model_server.queue(ANSWER, chunks=60)
    before = OpenAIChat.in_flight

    texts, usages = await collect(chat)

    assert "".join(texts) == ANSWER
    assert usages == [Usage(11, 60)]
    assert chat.paused, "the paused path was not taken"
    assert len(texts) < 30, f"{len(texts)} batches for 60 chunks: reads were not batched"
    assert settled(chat.paused) and OpenAIChat.in_flight == before

    again, _ = await collect(chat)  # a pooled connection left paused would hang here
    assert "".join(again) == "echo: count for me"


async def test_few_streams_in_flight_never_pause(model_server: FakeModelServer) -> None:
    chat = Watched(model_server.base_url, stall_timeout=5.0, retries=0)  # the default threshold
    model_server.chunk_delay = 0.005
    model_server.queue(ANSWER, chunks=60)
    try:
        texts, _ = await collect(chat)
    finally:
        await chat.close()
    assert "".join(texts) == ANSWER and chat.paused == []


async def failed_stream(chat: Watched) -> tuple[str, str]:
    """Stream until the expected ModelError: its kind, and the text that arrived before it."""
    texts: list[str] = []
    with pytest.raises(ModelError) as failure:
        async for part in chat.stream("gpt-4o-mini", ASK):
            texts.append(str(part))
    return failure.value.kind, "".join(texts)


async def test_a_stall_while_batching_still_times_out(chat: Watched, model_server: FakeModelServer) -> None:
    chat.stall_timeout = 0.3
    model_server.queue("one, two, tri, for, fiv, six, ", chunks=6, stall_after=3)
    kind, shown = await failed_stream(chat)
    assert kind == "timeout" and shown == "one, two, tri, "
    assert chat.paused and settled(chat.paused)


async def test_an_error_event_while_batching_surfaces(chat: Watched, model_server: FakeModelServer) -> None:
    model_server.chunk_delay = 0.1  # the first read sees only the first chunk, so later reads are paused ones
    model_server.queue("one, two, tri, for, ", chunks=4, error_after=3)
    kind, shown = await failed_stream(chat)
    assert kind == "server_error" and shown == "one, two, tri, "
    assert chat.paused and settled(chat.paused)


async def test_a_stream_cancelled_mid_pause_closes_its_connection(chat: Watched, model_server: FakeModelServer) -> None:
    model_server.chunk_delay = 0.005
    model_server.queue(ANSWER, chunks=60)
    before = OpenAIChat.in_flight

    task = asyncio.create_task(collect(chat))
    await chat.first_pause.wait()  # the stream is now in its paused wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert all(t.is_closing() for t in chat.paused), "an unfinished body must not go back to the pool"
    assert OpenAIChat.in_flight == before
    again, _ = await collect(chat)
    assert "".join(again) == "echo: count for me"


def test_the_payloads_of_a_read_parse_together_and_malformed_ones_still_fail() -> None:
    assert _parse([b'{"a": 1}', b"[2]", b'{"b": {"c": [3]}}']) == [{"a": 1}, {"b": {"c": [3]}}]
    assert _parse([]) == []
    for broken in ([b'{"a": 1}, {"b": 2}'], [b'{"a": [1', b'2]}'], [b'{"a": 1}', b'{"b": ']):
        with pytest.raises(ValueError):
            _parse(broken)
