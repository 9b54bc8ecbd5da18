"""Drain throughput: N `unread_count` jobs already queued, 2 worker processes, until all are done.

Jobyard's jobs are committed and published before its workers start; the peers' no-op messages are
sent before theirs start. All three are watched the same way: every few milliseconds the harness
reads how many messages are still unacknowledged in Redis (Jobyard acknowledges a job once its
claim, its counter upsert and its result are committed) and the CPU time the worker processes,
Postgres and Redis have used so far. The rate and the CPU per job are taken between 10 % and 90 %
done, so process start-up is in neither; the whole drain's rate is reported too. CPU per job is
the figure the machine's other load disturbs least.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.harness import Bench, Proc, cpu_seconds
from bench.peers import queues
from bench.peers.run import PEERS, peer, sender, start_worker
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.engine.lanes import waiting_counts
from core.platform.db import transaction

POLL_S = 0.01
#: The Postgres peers are watched by a count on their job table, a little less often.
PG_POLL_S = 0.05


class _Cpu:
    """CPU seconds used since the start by a process tree and the embedded servers (including
    Postgres backends forked after the start)."""

    def __init__(self, bench: Bench, proc: Proc) -> None:
        self.bench, self.proc = bench, proc
        self.base = {p.pid: _cpu(p) for p in bench.server_processes()}

    def used(self) -> float:
        servers = sum(_cpu(p) - self.base.get(p.pid, 0.0) for p in self.bench.server_processes())
        try:
            return servers + cpu_seconds(self.proc.tree())
        except psutil.Error:
            return servers


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


def _watch(
    n: int, pending: Callable[[], int], cpu: _Cpu, proc: Proc, poll_s: float = POLL_S
) -> dict[str, Any]:
    samples: list[tuple[float, int, float]] = []
    deadline = time.monotonic() + 600
    while True:
        left = pending()
        samples.append((time.time(), n - left, cpu.used()))
        if left == 0:
            break
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not drain:\n{proc.log()[-3000:]}")
        time.sleep(poll_s)

    def at(fraction: float) -> tuple[float, int, float]:
        return next(s for s in samples if s[1] >= fraction * n)

    t_lo, done_lo, cpu_lo = at(0.1)
    t_hi, done_hi, cpu_hi = at(0.9)
    t_first = next(t for t, done, _ in samples if done > 0)
    return {
        "steady_per_s": round((done_hi - done_lo) / max(t_hi - t_lo, 1e-9), 1),
        "whole_per_s": round(n / max(samples[-1][0] - t_first, 1e-9), 1),
        "seconds": round(samples[-1][0] - t_first, 3),
        "cpu_ms_per_1000_jobs": round((cpu_hi - cpu_lo) / max(done_hi - done_lo, 1) * 1e6, 1),
    }


def queue_backlog(bench: Bench, n: int) -> None:
    """N `unread_count` increments over 100 chats, committed and published, 1,000 a call."""
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


def jobyard(bench: Bench, n: int) -> dict[str, Any]:
    bench.reset()
    queue_backlog(bench, n)
    client = bench.redis()
    ns = bench.settings.redis_namespace

    def pending() -> int:
        held = sum(int(client.scard(k)) for k in client.scan_iter(match=f"{ns}:__acks__.*"))
        return waiting_counts(client, ns, ["unread_count"])["unread_count"] + held

    worker = bench.worker(wait=False)
    result = _watch(n, pending, _Cpu(bench, worker), worker)
    client.close()
    bench.stop_all()
    with transaction(bench.settings) as conn:
        succeeded = conn.exec_driver_sql(
            f"SELECT count(*) FROM jobs WHERE status = 'succeeded' AND {bench.fresh()}"
        ).scalar_one()
        total = conn.exec_driver_sql("SELECT sum(unread) FROM unread_counters").scalar_one()
    if succeeded != n or int(total) != n:
        raise RuntimeError(f"{succeeded} jobs succeeded and the counters add up to {total}, not {n}")
    return result


def peer_drain(bench: Bench, name: str, n: int) -> dict[str, Any]:
    bench.reset()
    p = peer(bench, name)
    send = sender(bench, p)
    for _ in range(n):
        send()
    proc = start_worker(bench, p)
    result = _watch(n, p.pending, _Cpu(bench, proc), proc)
    bench.stop_all()
    return result


def queue_peer_drain(bench: Bench, name: str, n: int) -> dict[str, Any]:
    """N no-ops sent by the peer's own client (batches of 1,000 where it has a batch API) before its
    workers start; the Postgres peers' tables analyzed after the fill, as autovacuum would have."""
    bench.reset()
    side = queues.Side(bench, name)
    try:
        side.client("fill", str(n))
        if side.pending() != n:
            raise RuntimeError(f"{name}: {side.pending()} jobs queued after the fill, not {n}")
        side.analyze()
        proc = side.start_worker()
        poll = PG_POLL_S if side.peer.store == "postgres" else POLL_S
        result = _watch(n, side.pending, _Cpu(bench, proc), proc, poll)
        bench.stop_all()
        succeeded = side.succeeded()
        if succeeded is not None and succeeded != n:
            raise RuntimeError(f"{name}: {succeeded} jobs succeeded, not {n}")
        return {"version": side.version, **result}
    finally:
        bench.stop_all()
        side.close()


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n = args.drain_jobs
    out: dict[str, Any] = {"jobs": n, "jobyard": jobyard(bench, n)}
    for name in PEERS:
        out[name] = peer_drain(bench, name, n)
        out[f"ratio_vs_{name}"] = round(out["jobyard"]["steady_per_s"] / out[name]["steady_per_s"], 2)
        out[f"cpu_ratio_vs_{name}"] = round(
            out[name]["cpu_ms_per_1000_jobs"] / out["jobyard"]["cpu_ms_per_1000_jobs"], 2
        )
    for name in queues.NAMES:
        out[name] = queues.attempt(name, lambda name=name: queue_peer_drain(bench, name, n))
        if "steady_per_s" in out[name]:
            out[f"ratio_vs_{name}"] = round(out["jobyard"]["steady_per_s"] / out[name]["steady_per_s"], 2)
    fastest = queues.fastest(out, "steady_per_s")
    if fastest:
        out["fastest_postgres_peer"] = fastest
        out["ratio_vs_fastest_postgres_peer"] = out[f"ratio_vs_{fastest}"]
    return out
