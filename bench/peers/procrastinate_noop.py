"""procrastinate with a no-op task, its worker as its CLI runs it:
`procrastinate --app=bench.peers.procrastinate_noop.app worker --queues noop --concurrency 8`.

Its own database (BENCH_PEER_DSN), the psycopg connector, LISTEN/NOTIFY on (its default). Given the
time it was sent, the task records its start delay in Redis (BENCH_STAMPS_URL); otherwise it does
nothing. `python -m bench.peers.procrastinate_noop ...` is the client (bench/peers/client.py).
"""

from __future__ import annotations

import os

import procrastinate

from bench.peers import QUEUE, client

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_PEER_DSN"]))


@app.task(name="noop", queue=QUEUE)
async def noop(sent: float | None = None) -> None:
    if sent is not None:
        await client.stamp(sent)


class Client:
    batch = True

    async def open(self, connections: int) -> None:
        connector = procrastinate.PsycopgConnector(
            conninfo=os.environ["BENCH_PEER_DSN"], min_size=connections, max_size=connections
        )
        self._swap = app.replace_connector(connector)
        self._swap.__enter__()
        await app.open_async()

    async def send(self, sent: float | None) -> None:
        await noop.defer_async(sent=sent)

    async def send_batch(self, n: int) -> None:
        await noop.batch_defer_async(*({} for _ in range(n)))

    async def close(self) -> None:
        await app.close_async()
        self._swap.__exit__(None, None, None)


if __name__ == "__main__":
    # The module's own name, not __main__: the workers find the job by it.
    from bench.peers import procrastinate_noop

    client.main(procrastinate_noop.Client())
