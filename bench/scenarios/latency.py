"""Idle latency: jobs sent one at a time at a steady rate to an idle farm, from the send to the start.

Jobyard: from just before `POST /v1/jobs` (over a kept-alive connection) to the job's started_at,
which the worker takes when it begins the claim (the handler runs once the claim commits, about a
millisecond later); the time to finished_at (claim, effect and result committed) is reported too.
Peers: from just before `send()` / `delay()` to the first line of the no-op task. The queue peers
(procrastinate, PgQueuer, Oban, arq) likewise, from just before their client's send (in a client
subprocess, bench/peers/client.py, one job at a time at the same rate) to the no-op's first line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from bench.harness import Bench, percentile, wait_until
from bench.peers import LATENCY_KEY, queues
from bench.peers.run import PEERS, peer, sender, start_worker, wait_ready

WARMUP = 20


def _paced(rate: float, count: int, send: Callable[[int], None]) -> None:
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)


def _summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "jobs": len(ms),
    }


def jobyard(bench: Bench, rate: float, count: int) -> dict[str, Any]:
    bench.reset()
    _, base = bench.api(workers=1)
    bench.worker()
    bench.scheduler()
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
    headers = {"Authorization": f"Bearer {bench.api_key}", "Content-Type": "application/json"}
    sent: dict[str, float] = {}
    answered: list[float] = []

    def send(i: int) -> None:
        body = json.dumps({"type": "unread_count", "payload": {"chat_id": f"c{i % 10}", "user_id": "u"}})
        t = time.time()
        conn.request("POST", "/v1/jobs", body, headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"enqueue answered {response.status}: {data[:200]!r}")
        if i >= WARMUP:
            sent[json.loads(data)["id"]] = t
            answered.append((time.time() - t) * 1000)

    _paced(rate, count + WARMUP, send)
    conn.close()
    total = count + WARMUP
    wait_until(
        lambda: (
            bench.scalar(f"SELECT count(*) FROM jobs WHERE status = 'succeeded' AND {bench.fresh()}") >= total
        ),
        60,
        "the latency jobs",
        interval=0.05,
    )
    from core.platform.db import transaction

    with transaction(bench.settings) as db:
        rows = db.exec_driver_sql(
            "SELECT id::text, extract(epoch FROM started_at), extract(epoch FROM finished_at) FROM jobs "
            f"WHERE {bench.fresh()}"
        ).all()
    commit = _commit_latency(bench, rate, count // 2)
    bench.stop_all()
    start_ms = [(float(s) - sent[i]) * 1000 for i, s, _ in rows if i in sent]
    done_ms = [(float(f) - sent[i]) * 1000 for i, _, f in rows if i in sent]
    return {
        **_summary(start_ms),
        "finished": _summary(done_ms),
        "http_answer": _summary(answered),
        "postgres_commit": commit,
    }


def _commit_latency(bench: Bench, rate: float, count: int) -> dict[str, float]:
    """The floor under every enqueue: one small durable commit (insert, WAL flush) on the same
    Postgres and disk, at the same rate, right after the run."""
    from core.platform.db import autocommit

    with autocommit(bench.settings) as db:
        db.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_commit (at timestamptz)")
        ms: list[float] = []

        def insert(_: int) -> None:
            t = time.perf_counter()
            db.exec_driver_sql("INSERT INTO bench_commit VALUES (now())")
            ms.append((time.perf_counter() - t) * 1000)

        _paced(rate, count, insert)
        db.exec_driver_sql("DROP TABLE bench_commit")
    return _summary(ms)


def peer_latency(bench: Bench, name: str, rate: float, count: int) -> dict[str, Any]:
    bench.reset()
    p = peer(bench, name)
    send_one = sender(bench, p)
    proc = start_worker(bench, p)
    wait_ready(bench, p, proc, send_one)
    key = LATENCY_KEY
    _paced(rate, count + WARMUP, lambda i: send_one(time.time()))
    wait_until(lambda: p.client.llen(key) >= count + WARMUP, 60, f"{name}'s latency tasks", interval=0.05)
    values = [float(v) * 1000 for v in p.client.lrange(key, WARMUP, -1)]
    bench.stop_all()
    return _summary(values)


def queue_peer_latency(bench: Bench, name: str, rate: float, count: int) -> dict[str, Any]:
    bench.reset()
    side = queues.Side(bench, name)
    try:
        proc = side.start_worker()
        side.wait_ready(proc)
        side.stamps.delete(LATENCY_KEY)
        side.client("latency", str(rate), str(count + WARMUP))
        wait_until(
            lambda: side.stamps.llen(LATENCY_KEY) >= count + WARMUP,
            60,
            f"{name}'s latency jobs",
            interval=0.05,
        )
        values = [v * 1000 for v in queues.stamps(side)[WARMUP:]]
        return {"version": side.version, **_summary(values)}
    finally:
        bench.stop_all()
        side.close()


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    count = int(args.latency_rate * args.latency_seconds)
    out: dict[str, Any] = {
        "rate_per_s": args.latency_rate,
        "jobyard": jobyard(bench, args.latency_rate, count),
    }
    for name in PEERS:
        out[name] = peer_latency(bench, name, args.latency_rate, count)
    for name in queues.NAMES:
        out[name] = queues.attempt(
            name, lambda name=name: queue_peer_latency(bench, name, args.latency_rate, count)
        )
    return out
