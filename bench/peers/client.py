"""The client side of the queue peers (procrastinate, PgQueuer, Oban, arq): one small process that
sends their no-op jobs with each library's own client API and prints what it did as one JSON line.

    python -m bench.peers.<peer>_noop fill N                    N jobs, in batches of 1,000 where
                                                                the library has a batch API
    python -m bench.peers.<peer>_noop latency RATE COUNT        one job at a time, paced, each
                                                                carrying its send time
    python -m bench.peers.<peer>_noop enqueue SECONDS TASKS BATCH
                                                                TASKS concurrent asyncio tasks, each
                                                                sending single jobs (BATCH 0) or
                                                                batches of BATCH, until SECONDS end

It runs in the harness's venv or in the peers' own (Oban needs Python 3.12, arq an older redis-py),
so it imports nothing of Jobyard or of the harness: the standard library and redis-py only.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any, Protocol

from bench.peers import LATENCY_KEY

#: Single sends a `fill` makes at once when the library has no batch API.
FILL_TASKS = 16
FILL_BATCH = 1000


class Client(Protocol):
    #: Whether the library has an API that sends many jobs in one call.
    batch: bool

    async def open(self, connections: int) -> None: ...
    async def send(self, sent: float | None) -> None: ...
    async def send_batch(self, n: int) -> None: ...
    async def close(self) -> None: ...


_stamps: Any = None


async def stamp(sent: float) -> None:
    """Called by a no-op that was given its send time: the start delay goes to a Redis list."""
    global _stamps
    delay = time.time() - sent
    if _stamps is None:
        import redis.asyncio

        _stamps = redis.asyncio.Redis.from_url(os.environ["BENCH_STAMPS_URL"])
    await _stamps.rpush(LATENCY_KEY, delay)


async def _fill(client: Client, n: int) -> dict[str, Any]:
    if client.batch:
        for start in range(0, n, FILL_BATCH):
            await client.send_batch(min(FILL_BATCH, n - start))
    else:
        left = [n]

        async def one() -> None:
            while left[0] > 0:
                left[0] -= 1
                await client.send(None)

        await asyncio.gather(*(one() for _ in range(FILL_TASKS)))
    return {"sent": n}


async def _latency(client: Client, rate: float, count: int) -> dict[str, Any]:
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await client.send(time.time())
    return {"sent": count}


async def _enqueue(client: Client, seconds: float, tasks: int, batch: int) -> dict[str, Any]:
    sent = [0]
    cpu0 = _cpu()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def one() -> None:
        while time.perf_counter() < deadline:
            if batch:
                await client.send_batch(batch)
                sent[0] += batch
            else:
                await client.send(None)
                sent[0] += 1

    await asyncio.gather(*(one() for _ in range(tasks)))
    seconds = time.perf_counter() - t0
    return {"sent": sent[0], "seconds": round(seconds, 3), "timed_cpu_s": round(_cpu() - cpu0, 3)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(client: Client, argv: list[str]) -> dict[str, Any]:
    command, *args = argv
    connections = int(args[1]) if command == "enqueue" else FILL_TASKS if command == "fill" else 1
    await client.open(connections)
    try:
        if command == "fill":
            return await _fill(client, int(args[0]))
        if command == "latency":
            return await _latency(client, float(args[0]), int(args[1]))
        if command == "enqueue":
            if int(args[2]) and not client.batch:
                return {"sent": 0, "seconds": 0.0, "error": "no batch API"}
            return await _enqueue(client, float(args[0]), int(args[1]), int(args[2]))
        raise SystemExit(f"unknown command {command!r}")
    finally:
        await client.close()


def main(client: Client) -> None:
    result = asyncio.run(_run(client, sys.argv[1:]))
    result["client_cpu_s"] = round(_cpu(), 3)
    print(json.dumps(result), flush=True)
