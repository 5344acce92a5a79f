"""Engine overhead per reply: everything but the model's own time.

A 1,000-message conversation in a database of 1,000,000 messages; the model answers instantly in 50
chunks from inside the process, so each measured turn is pure engine work: store the question, load
and trim the window, build the prompt, stream, store the answer.

    python -m bench.engine [--turns 300] [--http]

--http also runs the same turns through the fake OpenAI server over loopback HTTP (SDK included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from chatbots.config import Config
from chatbots.engine import Engine
from chatbots.model import Message, OpenAIChat
from chatbots.store import SQLiteDatabase, Store
from chatbots.types import ConversationKey, Inbound, Usage
from tests.fakes.model_server import FakeModelServer

KEY = ConversationKey("bench", "T1", "C1", "hot-thread")
ANSWER = "This is a fairly ordinary answer of a few dozen tokens, streamed in fifty small pieces. " * 2


class InstantModel:
    """Answers at once in 50 chunks, with usage, like a very fast server."""

    async def stream(self, model: str, messages: list[Message], max_output: int | None = None) -> AsyncIterator[str | Usage]:
        size = -(-len(ANSWER) // 50)
        for start in range(0, len(ANSWER), size):
            yield ANSWER[start : start + size]
        yield Usage(len(messages) * 20, 50)


class NullReply:
    async def start(self) -> None: ...
    async def append(self, text: str) -> None: ...
    async def finish(self) -> list[str]:
        return ["r"]
    async def fail(self, notice: str) -> list[str]:
        return []


def build_database(path: Path, total: int, hot: int) -> None:
    """Fill the database with `total` messages: `hot` in the measured thread, the rest in 10,000 others."""
    store = SQLiteDatabase.open(path)
    hot_id = store.conversation_id(KEY)
    others = [store.conversation_id(ConversationKey("bench", f"T{n % 50}", f"C{n}", "t")) for n in range(10_000)]
    text = "a typical chat message of a dozen words or so, asking about something at work"
    tokens = store_tokens = 20
    now = "2026-11-01T00:00:00.000000Z"
    conn = store.db.conn
    batch = []
    for n in range(total - hot):
        batch.append((others[n % len(others)], "user" if n % 2 == 0 else "assistant", text, store_tokens, "U1", "Ada", now))
        if len(batch) == 50_000:
            conn.executemany("INSERT INTO messages (conversation_id, role, text, tokens, author_id, author_name, created_at) VALUES (?,?,?,?,?,?,?)", batch)
            batch.clear()
    batch += [(hot_id, "user" if n % 2 == 0 else "assistant", text, tokens, "U1", "Ada", now) for n in range(hot)]
    conn.executemany("INSERT INTO messages (conversation_id, role, text, tokens, author_id, author_name, created_at) VALUES (?,?,?,?,?,?,?)", batch)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a settled database, not one mid-way through checkpointing 1M rows
    store.close()


async def measure(engine: Engine, turns: int, start: int) -> list[float]:
    timings = []
    for n in range(turns):
        message = Inbound(KEY, f"bench-{start + n}", "U1", "Ada", f"question {n}: what about the quarterly numbers?")
        began = time.perf_counter()
        result = await engine.handle(message, NullReply())
        timings.append((time.perf_counter() - began) * 1000)
        assert result.status == "answered", result
    return timings


def summary(name: str, timings: list[float]) -> dict[str, float | str]:
    ordered = sorted(timings)
    return {
        "name": name,
        "turns": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3),
        "max_ms": round(ordered[-1], 3),
    }


async def run(turns: int = 300, messages: int = 1_000_000, http: bool = False, log=print) -> list[dict[str, float | str]]:
    """Build the database, warm up, measure; one summary per mode. Moderation is off: only the engine is timed."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        began = time.perf_counter()
        build_database(path, messages, 1000)
        log(f"built {messages:,} messages in {time.perf_counter() - began:.1f}s")
        settings = Config(openai_api_key="x", db_path=str(path), moderation=False)
        engine = Engine(Store.open(path), InstantModel(), settings)
        try:
            await measure(engine, 20, 0)  # warm the tokenizer and caches
            results = [summary("engine overhead (in-process instant model)", await measure(engine, turns, 100))]
            if http:
                async with FakeModelServer(default_chunks=50) as server:
                    http_settings = Config(openai_api_key="x", openai_base_url=server.base_url, db_path=str(path),
                                             moderation=False)
                    engine.model = OpenAIChat.from_settings(http_settings)
                    await measure(engine, 20, 10_000)
                    results.append(summary("turn via fake HTTP model (SDK + loopback)", await measure(engine, turns, 20_000)))
        finally:
            await engine.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--http", action="store_true")
    args = parser.parse_args()
    for row in await run(args.turns, args.messages, args.http):
        print(json.dumps(row))


if __name__ == "__main__":
    asyncio.run(main())
