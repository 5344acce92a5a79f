"""Why the PostgreSQL store runs psycopg's blocking API on worker threads rather than its async API.

    python -m bench.pg_driver [--database-url URL] [--statements 2000]

Times one small write statement (an INSERT ... RETURNING like the hot path's), awaited from the event loop, three
ways on the same database: psycopg's AsyncConnection through psycopg_pool's AsyncConnectionPool, one held
AsyncConnection (no pool: the floor of the async API, unusable for parallel turns), and the blocking Connection
(ConnectionPool) on a worker thread as the Store runs it; sequentially (latency) and 16 at once (throughput). Worker threads keep one statement code path for SQLite and PostgreSQL, and a slow statement never
blocks the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from bench.engine import local_postgres_url, throwaway_database

SETUP = "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)"
INSERT = "INSERT INTO t (body) VALUES (%s) RETURNING id"


async def timed(call: Any, count: int, parallel: int) -> dict[str, float]:
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(count // parallel) for _ in range(parallel)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"p50_ms": round(1000 * statistics.median(ordered), 3), "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99)], 3),
            "statements_per_s": round(len(ordered) / elapsed)}


async def measure(url: str, count: int) -> list[dict[str, Any]]:
    results = []
    async with AsyncConnectionPool(url, min_size=8, max_size=8, kwargs={"autocommit": True}, open=False) as apool:
        await apool.wait()
        async with apool.connection() as conn:
            await conn.execute(SETUP)

        async def on_loop() -> None:
            async with apool.connection() as conn:
                await (await conn.execute(INSERT, ["hello"])).fetchone()

        for parallel in (1, 16):
            await timed(on_loop, 200, parallel)
            results.append({"driver": "psycopg async (AsyncConnectionPool)", "parallel": parallel, **await timed(on_loop, count, parallel)})

        async with apool.connection() as held:  # the floor: one connection kept, no pool, one statement at a time

            async def on_held() -> None:
                await (await held.execute(INSERT, ["hello"])).fetchone()

            await timed(on_held, 200, 1)
            results.append({"driver": "psycopg async, one held AsyncConnection", "parallel": 1, **await timed(on_held, count, 1)})

    pool = ConnectionPool(url, min_size=8, max_size=8, kwargs={"autocommit": True}, open=True)
    pool.wait()
    threads = ThreadPoolExecutor(max_workers=8)

    def blocking() -> None:
        with pool.connection() as conn:
            conn.execute(INSERT, ["hello"]).fetchone()

    async def on_thread() -> None:
        await asyncio.get_running_loop().run_in_executor(threads, blocking)

    for parallel in (1, 16):
        await timed(on_thread, 200, parallel)
        results.append({"driver": "psycopg blocking on a worker thread (the Store)", "parallel": parallel,
                        **await timed(on_thread, count, parallel)})
    threads.shutdown()
    pool.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    parser.add_argument("--statements", type=int, default=2000)
    args = parser.parse_args()
    with throwaway_database(args.database_url or local_postgres_url()[0]) as url:
        for row in await measure(url, args.statements):
            print(json.dumps(row))


if __name__ == "__main__":
    asyncio.run(main())
