"""Memory: resident size of idle processes, after each has done a little work.

Jobyard: the API process (`jobyard api`, one uvicorn process) and each worker process (the
`dramatiq` CLI's children, which run the jobs; their parent only supervises). Peers: their worker
processes (Dramatiq's children; Celery's main process and its prefork children); the queue peers'
(procrastinate, PgQueuer, Oban, arq: one process each of the WORKER_PROCESSES their shell started),
the largest of them, after the same 50 no-ops.
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.harness import Bench, Proc, wait_until
from bench.peers import queues
from bench.peers.run import PEERS, peer, sender, start_worker, wait_ready

SETTLE_S = 2.0


def _mib(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def _python_processes(proc: Proc) -> list[psutil.Process]:
    return [p for p in proc.tree() if "python" in p.name() or "celery" in p.name() or "dramatiq" in p.name()]


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    api, base = bench.api(workers=1)
    worker = bench.worker()
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
    headers = {"Authorization": f"Bearer {bench.api_key}", "Content-Type": "application/json"}
    for i in range(50):
        body = json.dumps({"type": "unread_count", "payload": {"chat_id": f"c{i}", "user_id": "u"}})
        conn.request("POST", "/v1/jobs", body, headers)
        conn.getresponse().read()
    conn.close()
    wait_until(
        lambda: bench.scalar("SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 50, 60, "50 jobs"
    )
    time.sleep(SETTLE_S)
    api_rss = max(_mib(p) for p in _python_processes(api))
    workers = worker.tree()[1:]  # the dramatiq CLI's children
    out: dict[str, Any] = {
        "jobyard": {"api_mib": api_rss, "worker_mib": max(_mib(p) for p in workers)},
    }
    bench.stop_all()
    for name in PEERS:
        bench.reset()
        p = peer(bench, name)
        send = sender(bench, p)
        proc = start_worker(bench, p)
        wait_ready(bench, p, proc, send)
        for _ in range(50):
            send()
        wait_until(lambda p=p: p.pending() == 0, 60, f"{name}'s 50 tasks")
        time.sleep(SETTLE_S)
        members = proc.tree()
        children = members[1:] if name == "dramatiq" else members
        out[name] = {"worker_mib": max(_mib(c) for c in children)}
        bench.stop_all()
    for name in queues.NAMES:
        out[name] = queues.attempt(name, lambda name=name: _queue_peer(bench, name))
    return out


def _queue_peer(bench: Bench, name: str) -> dict[str, Any]:
    bench.reset()
    side = queues.Side(bench, name)
    try:
        proc = side.start_worker()
        side.wait_ready(proc)
        side.client("fill", "50")
        wait_until(lambda: side.pending() == 0, 60, f"{name}'s 50 jobs")
        time.sleep(SETTLE_S)
        return {"version": side.version, "worker_mib": max(_mib(c) for c in proc.tree()[1:])}
    finally:
        bench.stop_all()
        side.close()
