"""arq with a no-op function, as its CLI runs it (the peers' own venv: arq needs redis-py < 6):
`arq bench.peers.arq_noop.WorkerSettings` (started as `python -m bench.peers.arq_noop worker`, the
same call with its log at WARNING), its defaults (10 jobs at a time, the queue polled every
0.5 s, results kept an hour), on Redis (BENCH_PEER_REDIS_URL, a database of its own). Given the time
it was sent, the function records its start delay in Redis (BENCH_STAMPS_URL).
`python -m bench.peers.arq_noop ...` is the client (bench/peers/client.py): `enqueue_job`; arq has
no batch API.
"""

from __future__ import annotations

import os
from typing import Any

from arq import create_pool  # type: ignore[import-not-found]
from arq.connections import RedisSettings  # type: ignore[import-not-found]

from bench.peers import client


async def noop(ctx: dict[str, Any], sent: float | None = None) -> None:
    if sent is not None:
        await client.stamp(sent)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_PEER_REDIS_URL"])


class Client:
    batch = False

    async def open(self, connections: int) -> None:
        self._redis: Any = await create_pool(WorkerSettings.redis_settings)

    async def send(self, sent: float | None) -> None:
        await self._redis.enqueue_job("noop", sent)

    async def send_batch(self, n: int) -> None:
        raise NotImplementedError("arq has no batch API")

    async def close(self) -> None:
        await self._redis.aclose()


if __name__ == "__main__":
    import logging
    import sys

    if sys.argv[1:] == ["worker"]:
        # What `arq bench.peers.arq_noop.WorkerSettings` runs, with its log at WARNING like every other
        # process of the harness (the CLI logs each job's start and end at INFO).
        from arq import run_worker

        logging.basicConfig(level=logging.WARNING)
        run_worker(WorkerSettings)  # type: ignore[arg-type]
    else:
        from bench.peers import arq_noop

        client.main(arq_noop.Client())
