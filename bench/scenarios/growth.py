"""Growth: the same farm on an empty history and on a long one, in one run; then pruning half of it
under a steady enqueue load (issue 18's benchmark).

1. On an empty history: idle latency, drain, single and batched HTTP enqueue and dispatch lag (the
   Jobyard half of those scenarios, run by their own code), and the ops reads: `GET /v1/queues`,
   the dashboard's overview (`GET /dashboard`) and `GET /metrics`, each timed over HTTP.
2. ``--growth-history`` finished jobs (10,000,000 by default) written straight into jobs and
   job_attempts by ``INSERT ... SELECT generate_series`` in chunks, in the order a farm writes them:
   finishing times spread evenly over the last 30 days, five job types, 95 % succeeded (one in
   twenty after a failed first attempt), 3 % dead after 4 attempts, 2 % cancelled before running;
   published, with results, errors and (whatsapp_message) idempotency keys. Then VACUUM ANALYZE, as
   autovacuum leaves a table that has settled. The farm's processes keep history forever here
   (JOBYARD_RETAIN_*=0), so no scheduler prunes it in the meantime.
3. The same measurements again; each figure's ratio to its empty-history figure.
4. The API (``--api-workers``) and a worker under a steady ``--growth-load-rate`` single-job enqueues
   a second (paced threads of the harness, each on its own kept-alive connection) for
   ``--growth-window`` seconds, then ``core.engine.retention.prune`` called in the harness with every
   final status kept 15 days (half of the history goes) and ``--growth-prune-batch`` jobs a
   transaction, while the load goes on; then VACUUM. Reported: the time to prune, the enqueue p99
   before and during it, and the sizes of jobs and job_attempts before the fill, after it, and after
   the prune and the vacuum.

The jobs a measurement creates are told from the history by their creation time (``Bench.since``):
the scenarios count only those, and a reset deletes only those.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.harness import Bench, percentile
from bench.scenarios import dispatch, drain, enqueue, history, latency
from core.access.keys import lookup_key
from core.access.sessions import open_session
from core.engine import stats
from core.engine.jobs import utcnow
from core.engine.retention import prune
from core.platform.db import transaction

#: History is spread over this many days; pruning keeps the last PRUNE_KEEP_DAYS of them.
HISTORY_DAYS, PRUNE_KEEP_DAYS = 30, 15
READ_RUNS, READ_WARMUP = 15, 2
#: A load request unanswered this long counts as failed (and its thread goes on, on a new connection).
TIMEOUT_S = 30.0

#: (phase key, figure key, label, kind): a throughput must stay >= 0.9x, a latency <= 1.2x.
FIGURES = (
    ("latency", "p50_ms", "idle latency p50, enqueue -> start, ms", "latency"),
    ("latency", "p99_ms", "idle latency p99, enqueue -> start, ms", "latency"),
    ("drain", "steady_per_s", "drain, jobs/s (10-90 %)", "throughput"),
    ("enqueue_single", "jobs_per_s", "HTTP enqueue, single jobs, jobs/s", "throughput"),
    ("enqueue_single", "latency_p99_ms", "HTTP enqueue, single jobs, p99 ms", "latency"),
    ("enqueue_batch", "jobs_per_s", "HTTP enqueue, batches of 1,000, jobs/s", "throughput"),
    ("dispatch", "p50_ms", "dispatch lag p50, ms", "latency"),
    ("dispatch", "p99_ms", "dispatch lag p99, ms", "latency"),
    ("queues", "median_ms", "GET /v1/queues, median ms", "latency"),
    ("overview", "median_ms", "GET /dashboard (overview), median ms", "latency"),
    ("metrics", "median_ms", "GET /metrics, median ms", "latency"),
)
THROUGHPUT_MIN, LATENCY_MAX, READ_MAX_MS = 0.9, 1.2, 100.0
PRUNE_MAX_S, PRUNE_P99_MAX, SIZE_MAX = 60.0, 2.0, 1.2


# -- the ops reads over HTTP ------------------------------------------------------------------------


def _timed_get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    took = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
    return took


def reads(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """`GET /v1/queues`, the dashboard's overview and `GET /metrics`, each timed READ_RUNS times in
    turn (after READ_WARMUP rounds) over one kept-alive connection to `jobyard api`."""
    bench.reset()
    _, base = bench.api(workers=args.api_workers)
    with transaction(bench.settings) as db:
        key = lookup_key(db, bench.api_key)
        assert key is not None
        token, _ = open_session(db, key, 3600)
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    bearer = {"Authorization": f"Bearer {bench.api_key}"}
    paths = {
        "queues": ("/v1/queues", bearer),
        "overview": ("/dashboard", {"Cookie": f"jobyard_session={token}"}),
        "metrics": ("/metrics", bearer),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(READ_WARMUP + READ_RUNS):
        for name, (path, headers) in paths.items():
            took = _timed_get(conn, path, headers)
            if i >= READ_WARMUP:
                times[name].append(took)
    conn.close()
    bench.stop_all()
    return {
        name: {
            "median_ms": round(statistics.median(ms), 2),
            "p95_ms": round(percentile(ms, 0.95), 2),
            "max_ms": round(max(ms), 2),
            "runs": len(ms),
        }
        for name, ms in times.items()
    }


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The Jobyard half of the default scenarios, and the ops reads, on whatever history there is."""
    out: dict[str, Any] = {}
    steps: tuple[tuple[str, Callable[[], Any]], ...] = (
        (
            "latency",
            lambda: latency.jobyard(bench, args.latency_rate, int(args.latency_rate * args.latency_seconds)),
        ),
        ("drain", lambda: drain.jobyard(bench, args.drain_jobs)),
        ("enqueue", lambda: enqueue.run(bench, args)),
        ("dispatch", lambda: dispatch.run(bench, args)),
        ("reads", lambda: reads(bench, args)),
    )
    for name, step in steps:
        t0 = time.monotonic()
        result = step()
        if name == "enqueue":
            out["enqueue_single"], out["enqueue_batch"] = result["single"], result["batch"]
        elif name == "reads":
            out.update(result)
        else:
            out[name] = result
        print(f"      {name}: {time.monotonic() - t0:.0f} s", flush=True)
    bench.reset()
    return out


def compare(empty: dict[str, Any], history: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for phase, key, label, kind in FIGURES:
        a, b = empty[phase][key], history[phase][key]
        ratio = round(b / a, 2) if a else None
        ok = ratio is not None and (ratio >= THROUGHPUT_MIN if kind == "throughput" else ratio <= LATENCY_MAX)
        rows.append({"figure": label, "kind": kind, "empty": a, "history": b, "ratio": ratio, "met": ok})
    return rows


# -- pruning under load ---------------------------------------------------------------------------


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


def prune_under_load(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    # What the measurements on the history deleted is space for new rows by now, as autovacuum makes it.
    history.vacuum(bench)
    sizes = history.sizes(bench)
    settings = history.unbounded(bench.settings).replace(
        retain_succeeded_s=PRUNE_KEEP_DAYS * history.DAY_S,
        retain_cancelled_s=PRUNE_KEEP_DAYS * history.DAY_S,
        retain_dead_s=PRUNE_KEEP_DAYS * history.DAY_S,
        prune_batch=args.growth_prune_batch,
    )
    history_before = int(bench.scalar(f"SELECT count(*) FROM jobs WHERE NOT ({bench.fresh()})"))
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
    history_after = int(bench.scalar(f"SELECT count(*) FROM jobs WHERE NOT ({bench.fresh()})"))
    before, during = load.window(before_from, prune_from), load.window(prune_from, prune_to)
    vacuum_s = history.vacuum(bench)
    return {
        "sizes_before": sizes,
        "retention_s": PRUNE_KEEP_DAYS * history.DAY_S,
        "prune_batch": args.growth_prune_batch,
        "load_rate_asked": args.growth_load_rate,
        "history_jobs_before": history_before,
        "history_jobs_after": history_after,
        "rows_removed": removed,
        "prune_s": round(prune_to - prune_from, 1),
        "jobs_pruned_per_s": round((history_before - history_after) / max(prune_to - prune_from, 1e-9)),
        "enqueue_before": before,
        "enqueue_during": during,
        "p99_ratio": round(during["p99_ms"] / before["p99_ms"], 2),
        "enqueue_failures": dict(Counter(what for _, what in load.failed)),
        "load_threads": len(load.threads),
        "vacuum_s": vacuum_s,
    }


def _total(sizes: dict[str, dict[str, int]], key: str) -> int:
    return sum(s[key] for s in sizes.values())


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    # The farm's processes keep history forever: only the harness prunes, when it means to.
    bench.extra_env = {
        "JOBYARD_RETAIN_SUCCEEDED": "0",
        "JOBYARD_RETAIN_CANCELLED": "0",
        "JOBYARD_RETAIN_DEAD": "0",
    }
    bench.since = history.db_now(bench)
    stats.refresh(bench.settings, utcnow())  # the job counters' rollup starts now, not in 1970
    print("      growth: measuring on an empty history", flush=True)
    empty = measure(bench, args)

    with transaction(bench.settings) as conn:
        conn.execute(sa.text("TRUNCATE jobs, job_attempts CASCADE"))
    sizes_before = history.sizes(bench)
    print(f"      growth: writing {args.growth_history:,} finished jobs", flush=True)
    filled = history.fill(bench, args.growth_history)
    sizes_filled = history.sizes(bench)
    bench.since = history.db_now(bench)

    print("      growth: measuring on the history", flush=True)
    on_history = measure(bench, args)
    ratios = compare(empty, on_history)

    print("      growth: pruning half of it under load", flush=True)
    pruning = prune_under_load(bench, args)
    sizes_before_prune = pruning.pop("sizes_before")
    sizes_after = history.sizes(bench)

    before_b, filled_b, after_b = (
        _total(s, "total_bytes") for s in (sizes_before, sizes_filled, sizes_after)
    )
    kept = pruning["history_jobs_after"] / max(pruning["history_jobs_before"], 1)
    verdicts = {
        "throughputs_and_latencies": all(r["met"] for r in ratios),
        "reads_under_100_ms": all(
            on_history[k]["median_ms"] < READ_MAX_MS for k in ("queues", "overview", "metrics")
        ),
        "prune_under_60_s": pruning["prune_s"] < PRUNE_MAX_S,
        "prune_p99_under_2x": pruning["p99_ratio"] < PRUNE_P99_MAX,
        "size_within_20_percent_of_before_fill": after_b <= SIZE_MAX * before_b,
        # Not the criterion, which cannot hold with half of the history kept: the size after
        # against what the rows left would take in the filled tables.
        "size_within_20_percent_of_rows_left": after_b <= SIZE_MAX * filled_b * kept,
    }
    return {
        "history_jobs": args.growth_history,
        "fill": filled,
        "empty": empty,
        "history": on_history,
        "ratios": ratios,
        "prune": pruning,
        "sizes": {
            "before_fill": sizes_before,
            "after_fill": sizes_filled,
            "before_prune": sizes_before_prune,
            "after_prune_vacuum": sizes_after,
        },
        "size_after_vs_before_fill": round(after_b / max(before_b, 1), 1),
        "size_after_vs_rows_left": round(after_b / max(filled_b * kept, 1), 2),
        "verdicts": verdicts,
    }
