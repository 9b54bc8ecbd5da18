"""Oban for Python with a no-op job, as its CLI runs it (Python >= 3.12: the peers' own venv):
`oban start --queues noop:8 --cron-modules bench.peers.oban_noop` in its own database
(BENCH_PEER_DSN), its defaults otherwise (a pool of up to 10 connections, the Postgres notifier, the
stager every second). Given the time it was sent, the job records its start delay in Redis
(BENCH_STAMPS_URL). `python -m bench.peers.oban_noop ...` is the client (bench/peers/client.py): an
Oban instance without queues (client mode), `enqueue`, and `enqueue_many` for a batch.
"""

from __future__ import annotations

import os
from typing import Any

from oban import Oban, job  # type: ignore[import-not-found]

from bench.peers import QUEUE, client


@job(queue=QUEUE)
async def noop(sent: float | None = None) -> None:
    if sent is not None:
        await client.stamp(sent)


class Client:
    batch = True

    async def open(self, connections: int) -> None:
        self._pool: Any = await Oban.create_pool(
            os.environ["BENCH_PEER_DSN"], min_size=connections, max_size=connections
        )
        self._oban = Oban(pool=self._pool)

    async def send(self, sent: float | None) -> None:
        await self._oban.enqueue(noop.new(sent=sent))

    async def send_batch(self, n: int) -> None:
        await self._oban.enqueue_many(noop.new() for _ in range(n))

    async def close(self) -> None:
        await self._pool.close()


if __name__ == "__main__":
    # The module's own name, not __main__: the workers find the job by it.
    from bench.peers import oban_noop

    client.main(oban_noop.Client())
