"""The growth benchmark's last step: pruning the history's older half while `jobyard api` and a worker
take a steady single-job enqueue load (see growth.py's docstring)."""

from __future__ import annotations

import argparse
import http.client
import json
import math
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bench.harness import Bench, percentile
from bench.scenarios import history
from core.engine.retention import prune

#: What pruning keeps: the fill's kept half finishes within the last 15 days, its prunable half before.
PRUNE_KEEP_DAYS = 15
#: A load request unanswered this long counts as failed (and its thread goes on, on a new connection).
TIMEOUT_S = 30.0


class Load:
    """``rate`` single-job enqueues a second, spread over ``threads`` paced threads, each on its own
    kept-alive connection; records (send time, latency ms) of every 201."""

    def __init__(self, base: str, api_key: str, rate: float, threads: int) -> None:
        self.url = urlsplit(base)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.rate, self.n = rate, threads
        self.samples: list[tuple[float, float]] = []
        #: (send time, status or exception name) of every request that did not answer 201.
        self.failed: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, index: int) -> None:
        conn = http.client.HTTPConnection(self.url.hostname or "127.0.0.1", self.url.port, timeout=TIMEOUT_S)
        interval = self.n / self.rate
        body = json.dumps({"type": "unread_count", "payload": {"chat_id": f"c{index}", "user_id": "u"}})
        due = time.monotonic() + index * interval / self.n
        while not self.stop.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += interval
            sent = time.monotonic()
            try:
                conn.request("POST", "/v1/jobs", body, self.headers)
                response = conn.getresponse()
                response.read()
                status: int | str = response.status
            except (OSError, http.client.HTTPException) as exc:  # no answer in time, or a broken connection
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(
                    self.url.hostname or "127.0.0.1", self.url.port, timeout=TIMEOUT_S
                )
            took = (time.monotonic() - sent) * 1000
            with self.lock:
                if status == 201:
                    self.samples.append((sent, took))
                else:
                    self.failed.append((sent, str(status)))
        conn.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def window(self, a: float, b: float) -> dict[str, Any]:
        ms = [took for sent, took in self.samples if a <= sent < b]
        failed: dict[str, int] = {}
        for sent, what in self.failed:
            if a <= sent < b:
                failed[what] = failed.get(what, 0) + 1
        return {
            "requests": len(ms),
            "failed": failed,
            "jobs_per_s": round(len(ms) / max(b - a, 1e-9), 1),
            "p50_ms": round(percentile(ms, 0.5), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2) if ms else None,
        }


def prune_under_load(bench: Bench, args: argparse.Namespace, today: datetime) -> dict[str, Any]:
    """The load for ``--growth-window`` seconds, then ``core.engine.retention.prune`` with every final
    status kept PRUNE_KEEP_DAYS days while it goes on, then VACUUM. ``today``: the UTC midnight the
    fill's halves were laid out from (if the run has crossed another since, the kept half's first day
    is past its retention too, and goes)."""
    bench.reset()
    # What the measurements on the history deleted is space for new rows by now, as autovacuum makes it.
    history.vacuum(bench)
    sizes = history.sizes(bench)
    keep_s = PRUNE_KEEP_DAYS * history.DAY_S
    settings = history.unbounded(bench.settings).replace(
        retain_succeeded_s=keep_s,
        retain_cancelled_s=keep_s,
        retain_dead_s=keep_s,
        prune_batch=args.growth_prune_batch,
    )
    history_before = history.kept_jobs(bench)
    partitions_before = history.partitions(bench)
    counted_before = history.prune_counts(bench)
    _, base = bench.api(workers=args.api_workers)
    bench.worker()
    # Enough threads that each sends at most 16 a second, so a slow answer does not hold the rate back.
    load = Load(base, bench.api_key, args.growth_load_rate, max(8, math.ceil(args.growth_load_rate / 16)))
    load.start()
    time.sleep(2.0)  # warm-up: connections, caches
    before_from = time.monotonic()
    time.sleep(args.growth_window)
    prune_from = time.monotonic()
    removed = prune(settings)
    prune_to = time.monotonic()
    time.sleep(2.0)
    load.finish()
    bench.stop_all()
    history_after = history.kept_jobs(bench)
    partitions_after = history.partitions(bench)
    counted = history.prune_counts(bench)
    counted.subtract(counted_before)
    before, during = load.window(before_from, prune_from), load.window(prune_from, prune_to)
    vacuum_s = history.vacuum(bench)
    return {
        "sizes_before": sizes,
        "retention_s": keep_s,
        "prune_batch": args.growth_prune_batch,
        "load_rate_asked": args.growth_load_rate,
        "history_jobs_before": history_before,
        "history_jobs_after": history_after,
        "partitions_before": len(partitions_before),
        "partitions_after": len(partitions_after),
        "partitions_dropped": sorted(set(partitions_before) - set(partitions_after)),
        "day_changed": history.today_start(bench) != today,
        "rows_removed": removed,
        # What prune_counts gained, per "table/status" (a dropped day's jobs count as removed too).
        "pruned_counts": {k: n for k, n in sorted(counted.items()) if n},
        "prune_s": round(prune_to - prune_from, 1),
        "jobs_pruned_per_s": round((history_before - history_after) / max(prune_to - prune_from, 1e-9)),
        "enqueue_before": before,
        "enqueue_during": during,
        "p99_ratio": round(during["p99_ms"] / before["p99_ms"], 2),
        "enqueue_failures": dict(Counter(what for _, what in load.failed)),
        "load_threads": len(load.threads),
        "vacuum_s": vacuum_s,
    }
