"""PgQueuer with a no-op entrypoint, as its CLI runs it: `pgq run bench.peers.pgqueuer_noop:main`
(its defaults: batches of 10, LISTEN/NOTIFY, no concurrency limit), on asyncpg as its quick start has
it, in its own database (BENCH_PEER_DSN); `python -m bench.peers.pgqueuer_noop worker` runs the same
supervisor as `pgq run`. Given the time it was sent (the payload), the entrypoint
records its start delay in Redis (BENCH_STAMPS_URL). `python -m bench.peers.pgqueuer_noop ...` is the
client (bench/peers/client.py): `Queries.enqueue`, with lists for a batch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.models import Job

from bench.peers import QUEUE, client


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` takes (an async context manager since pgqueuer 1.x)."""
    connection = await asyncpg.connect(os.environ["BENCH_PEER_DSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(QUEUE)
    async def noop(job: Job) -> None:
        if job.payload:
            await client.stamp(float(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()


class Client:
    batch = True

    async def open(self, connections: int) -> None:
        self._pool: Any = await asyncpg.create_pool(
            os.environ["BENCH_PEER_DSN"], min_size=connections, max_size=connections
        )
        self._queries = Queries(AsyncpgPoolDriver(self._pool))

    async def send(self, sent: float | None) -> None:
        await self._queries.enqueue(QUEUE, None if sent is None else repr(sent).encode())

    async def send_batch(self, n: int) -> None:
        await self._queries.enqueue([QUEUE] * n, [None] * n, [0] * n)

    async def close(self) -> None:
        await self._pool.close()


if __name__ == "__main__":
    import sys

    # The module's own name, not __main__.
    from bench.peers import pgqueuer_noop

    if sys.argv[1:] == ["worker"]:
        # What `pgq run bench.peers.pgqueuer_noop:main` runs, with its defaults, on the event loop the
        # CLI picks (uvloop where installed). Not the CLI itself: pgqueuer 1.6.0's `pgq run` fails
        # while setting up its log ('str' object has no attribute 'name').
        from pgqueuer.adapters.cli import supervisor
        from pgqueuer.adapters.cli.cli import asyncio_run

        asyncio_run(supervisor.run("bench.peers.pgqueuer_noop:main"))
    else:
        client.main(pgqueuer_noop.Client())
