"""Drain throughput: N `unread_count` jobs already queued, 2 worker processes, until all are done.

Jobyard's jobs are committed and published before its workers start, and counted done when
Postgres shows them succeeded (each with its claim, its counter upsert and its result written).
The peers' no-op messages are sent before their workers start, and counted done when acknowledged.
Both rates are taken between 10 % and 90 % done, so process start-up is not in them; the whole
drain's rate is reported too.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.harness import Bench, wait_until
from bench.peers.run import PEERS, peer, sender, start_worker
from core.broker import build_broker
from core.jobs import NewJob, enqueue


def _rates(done_at: list[float], started: float, n: int) -> dict[str, float]:
    """Rates from the times (ascending) at which each of n jobs was done."""
    lo, hi = done_at[int(0.1 * n)], done_at[int(0.9 * n) - 1]
    return {
        "steady_per_s": round((int(0.9 * n) - int(0.1 * n)) / max(hi - lo, 1e-9), 1),
        "whole_per_s": round(n / max(done_at[-1] - started, 1e-9), 1),
        "seconds": round(done_at[-1] - started, 3),
    }


def jobyard(bench: Bench, n: int) -> dict[str, Any]:
    bench.reset()
    broker = build_broker(bench.settings)
    for start in range(0, n, 1000):
        batch = [
            NewJob(
                type="unread_count",
                payload={"chat_id": f"c{(start + i) % 100}", "user_id": "u", "op": "increment", "by": 1},
            )
            for i in range(min(1000, n - start))
        ]
        enqueue(batch, broker, bench.settings)
    broker.client.close()
    worker = bench.worker(wait=False)
    wait_until(
        lambda: (
            bench.scalar("SELECT count(*) FROM jobs WHERE status = 'succeeded'") >= n or not worker.alive()
        ),
        600,
        "the drain",
        interval=0.1,
    )
    if not worker.alive():
        raise RuntimeError(f"the worker exited:\n{worker.log()}")
    with bench_conn(bench) as conn:
        rows = conn.exec_driver_sql(
            "SELECT extract(epoch FROM finished_at) FROM jobs ORDER BY finished_at"
        ).all()
        started = conn.exec_driver_sql("SELECT extract(epoch FROM min(started_at)) FROM jobs").scalar_one()
        total = conn.exec_driver_sql("SELECT sum(unread) FROM unread_counters").scalar_one()
    bench.stop_all()
    if int(total) != n:
        raise RuntimeError(f"counters add up to {total}, not {n}: an effect was lost or doubled")
    return _rates([float(r[0]) for r in rows], float(started), n)


def bench_conn(bench: Bench) -> Any:
    from core.db import transaction

    return transaction(bench.settings)


def peer_drain(bench: Bench, name: str, n: int) -> dict[str, Any]:
    bench.reset()
    p = peer(bench, name)
    send = sender(bench, p)
    for _ in range(n):
        send()
    proc = start_worker(bench, p)
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    while True:
        pending = p.pending()
        samples.append((time.time(), pending))
        if pending == 0:
            break
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"peer {name} did not drain:\n{proc.log()}")
        time.sleep(0.005)
    bench.stop_all()
    # The first sample with fewer waiting than sent is the drain's start; each later sample gives
    # the time by which n - pending messages were done.
    started = next(t for t, left in samples if left < n) if any(left < n for _, left in samples) else 0
    done_at: list[float] = []
    for t, left in samples:
        while len(done_at) < n - left:
            done_at.append(t)
    return _rates(done_at, started, n)


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n = args.drain_jobs
    out: dict[str, Any] = {"jobs": n, "jobyard": jobyard(bench, n)}
    for name in PEERS:
        out[name] = peer_drain(bench, name, n)
    out["ratio_vs_dramatiq"] = round(out["jobyard"]["steady_per_s"] / out["dramatiq"]["steady_per_s"], 2)
    out["ratio_vs_celery"] = round(out["jobyard"]["steady_per_s"] / out["celery"]["steady_per_s"], 2)
    return out
