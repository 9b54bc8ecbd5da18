"""Growth: the same farm on an empty history and on a long one, in one run; then pruning the older half
of it under a steady enqueue load (issue 18's benchmark).

1. ``--growth-history`` finished jobs (10,000,000 by default) written as the farm leaves them
   (history.py): succeeded and cancelled ones in ``job_history``, one partition per UTC day of
   finishing, their attempts in ``attempt_log``; dead ones in ``jobs`` with their ``job_attempts``
   rows. Five job types, 95 % succeeded (one in twenty after a failed first attempt), 3 % dead after 4
   attempts, 2 % cancelled before running; published, with results, errors and (whatsapp_message)
   idempotency keys. In two halves, from T0, the start of today (UTC, by Postgres's clock): first the
   KEPT half, finishing evenly over [T0 - 15 days, now - 3 minutes); then the tables' sizes (the size,
   before the fill, of what the prune will remove); then the PRUNABLE half, finishing evenly over
   [T0 - 30 days, T0 - 15 days). Each half ends with VACUUM ANALYZE, as autovacuum leaves a table
   that has settled. The farm's processes keep history forever here (JOBYARD_RETAIN_*=0), so no
   scheduler prunes it in the meantime (one may still move the measurements' own finished jobs
   into job_history: that is not pruning, and a reset deletes them there too).
2. On an empty database beside the history's (the same Postgres server, migrated, a key of its
   own) and on the history's, taking turns round by round (``--growth-rounds``, 3): idle latency,
   drain, single and batched HTTP enqueue and dispatch lag (the Jobyard half of those scenarios, run
   by their own code), every figure the median of its rounds; then the ops reads,
   `GET /v1/queues`, the dashboard's overview (`GET /dashboard`) and `GET /metrics`, each timed over
   HTTP, the sides taking turns request by request. Each figure's ratio, history to empty. Taking turns, the two sides share whatever the
   machine does meanwhile; measured minutes apart (before and after the fill), two windows of a few
   seconds on a shared 2-core machine differ by 10-50 %.
3. The API (``--api-workers``) and a worker under a steady ``--growth-load-rate`` single-job enqueues
   a second for ``--growth-window`` seconds, then ``core.engine.retention.prune`` called in the harness
   with every final status kept 15 days and ``--growth-prune-batch`` jobs a transaction, while the load
   goes on (pruning.py): the prunable half's 15 days of job_history are dropped whole, and its dead
   jobs (with the few of the kept half's first day that are past 15 days already) deleted from jobs
   by batches. Then VACUUM. Reported: the time to prune, the partitions dropped, the enqueue p99
   before and during it, and the sizes of jobs, job_attempts and job_history (over its partitions)
   before the fill, after the kept half, after the whole fill, before the prune and after the prune
   and the vacuum. The size verdict compares the last with the sizes after the kept half, i.e. before
   the fill of what was pruned; the sizes before any fill are reported as information.

The jobs a measurement creates are told from the history by their creation time (``Bench.since``):
the scenarios count only those, and a reset deletes only those (from jobs and from job_history), then
vacuums jobs and job_attempts. The empty database is reset the same way (its ``since`` is its
creation), never by TRUNCATE, so that both sides start each measurement in the same state.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.harness import Bench, percentile
from bench.scenarios import dispatch, drain, enqueue, history, latency, pruning
from core.access.keys import SCOPES, create_key, lookup_key
from core.access.sessions import open_session
from core.engine import stats
from core.engine.jobs import utcnow
from core.platform.db import autocommit, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings

#: The history finishes over the last HISTORY_DAYS days; pruning keeps pruning.PRUNE_KEEP_DAYS of them.
HISTORY_DAYS = 30
READ_RUNS, READ_WARMUP = 15, 2
READS = ("queues", "overview", "metrics")

#: (phase key, figure key, label, kind): a throughput must stay >= 0.9x, a latency <= 1.2x; an ops
#: read must answer in under READ_MAX_MS on the history (issue 18's own bar for them; its ratio is
#: reported as information).
FIGURES = (
    ("latency", "p50_ms", "idle latency p50, enqueue -> start, ms", "latency"),
    ("latency", "p99_ms", "idle latency p99, enqueue -> start, ms", "latency"),
    ("drain", "steady_per_s", "drain, jobs/s (10-90 %)", "throughput"),
    ("enqueue_single", "jobs_per_s", "HTTP enqueue, single jobs, jobs/s", "throughput"),
    ("enqueue_single", "latency_p99_ms", "HTTP enqueue, single jobs, p99 ms", "latency"),
    ("enqueue_batch", "jobs_per_s", "HTTP enqueue, batches of 1,000, jobs/s", "throughput"),
    ("dispatch", "p50_ms", "dispatch lag p50, ms", "latency"),
    ("dispatch", "p99_ms", "dispatch lag p99, ms", "latency"),
    ("queues", "median_ms", "GET /v1/queues, median ms", "read"),
    ("overview", "median_ms", "GET /dashboard (overview), median ms", "read"),
    ("metrics", "median_ms", "GET /metrics, median ms", "read"),
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


def reads(bench: Bench, args: argparse.Namespace, sides: dict[str, Side]) -> dict[str, dict[str, Any]]:
    """`GET /v1/queues`, the dashboard's overview and `GET /metrics` on each side's `jobyard api`,
    each timed READ_RUNS times (after READ_WARMUP rounds) over one kept-alive connection a side, the
    sides taking turns request by request."""
    targets: dict[str, tuple[http.client.HTTPConnection, dict[str, tuple[str, dict[str, str]]]]] = {}
    for side_name, side in sides.items():
        with side.used(bench):
            bench.reset()
            _, base = bench.api(workers=args.api_workers)
            with transaction(bench.settings) as db:
                key = lookup_key(db, bench.api_key)
                assert key is not None
                token, _ = open_session(db, key, 3600)
        url = urlsplit(base)
        bearer = {"Authorization": f"Bearer {side.api_key}"}
        targets[side_name] = (
            http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60),
            {
                "queues": ("/v1/queues", bearer),
                "overview": ("/dashboard", {"Cookie": f"jobyard_session={token}"}),
                "metrics": ("/metrics", bearer),
            },
        )
    times: dict[str, dict[str, list[float]]] = {s: {name: [] for name in READS} for s in sides}
    for i in range(READ_WARMUP + READ_RUNS):
        for name in READS:
            for side_name, (conn, paths) in targets.items():
                took = _timed_get(conn, *paths[name])
                if i >= READ_WARMUP:
                    times[side_name][name].append(took)
    for conn, _ in targets.values():
        conn.close()
    bench.stop_all()
    return {
        side_name: {
            name: {
                "median_ms": round(statistics.median(ms), 2),
                "p95_ms": round(percentile(ms, 0.95), 2),
                "max_ms": round(max(ms), 2),
                "runs": len(ms),
            }
            for name, ms in by_read.items()
        }
        for side_name, by_read in times.items()
    }


@dataclass
class Side:
    """One database the measurements run on: the empty one or the history's, on the same server."""

    settings: Settings
    api_key: str
    #: Jobs created before this are the history (Bench.since), which a reset keeps; on the empty
    #: database, its creation.
    since: datetime | None

    @contextmanager
    def used(self, bench: Bench) -> Iterator[None]:
        """The harness's processes, resets and counts on this database meanwhile."""
        saved = (bench.settings, bench.api_key, bench.since)
        bench.settings, bench.api_key, bench.since = self.settings, self.api_key, self.since
        try:
            yield
        finally:
            bench.settings, bench.api_key, bench.since = saved


def empty_side(bench: Bench) -> Side:
    """A database of its own beside the history's, on the same Postgres server, migrated, with a key."""
    url = sa.engine.make_url(bench.settings.database_url or "")
    name = f"{url.database}_empty"
    with autocommit(bench.settings) as conn:  # CREATE DATABASE cannot run in a transaction
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    settings = bench.settings.replace(
        database_url=url.set(database=name).render_as_string(hide_password=False)
    )
    upgrade(settings)
    with transaction(settings) as conn:
        _, secret = create_key(conn, "bench", SCOPES)
    stats.refresh(settings, utcnow())  # the job counters' rollup starts now, not in 1970
    # Reset the way the history's side is (Bench.reset: delete what a measurement made, then
    # vacuum), not by TRUNCATE: a fresh file each time is not the state a farm's live table is in.
    with transaction(settings) as conn:
        since = conn.execute(sa.text("SELECT now()")).scalar_one()
    return Side(settings, secret, since)


def measure(bench: Bench, args: argparse.Namespace, sides: dict[str, Side]) -> dict[str, dict[str, Any]]:
    """The Jobyard half of the default scenarios on each side, ``--growth-rounds`` rounds of each,
    the sides taking turns round by round (so what the shared machine does meanwhile falls on both
    alike), every figure the median of its rounds (``median_of``); then the ops reads on each."""
    out: dict[str, dict[str, Any]] = {name: {} for name in sides}
    steps: tuple[tuple[str, Callable[[], Any]], ...] = (
        (
            "latency",
            lambda: latency.jobyard(bench, args.latency_rate, int(args.latency_rate * args.latency_seconds)),
        ),
        ("drain", lambda: drain.jobyard(bench, args.drain_jobs)),
        ("enqueue", lambda: enqueue.jobyard(bench, args)),
        ("dispatch", lambda: dispatch.run(bench, args)),
    )
    for step_name, step in steps:
        t0 = time.monotonic()
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for _ in range(max(1, args.growth_rounds)):
            for name, side in sides.items():
                with side.used(bench):
                    rounds[name].append(step())
        for name in sides:
            result = median_of(rounds[name])
            if step_name == "enqueue":
                out[name]["enqueue_single"], out[name]["enqueue_batch"] = result["single"], result["batch"]
            else:
                out[name][step_name] = result
        print(f"      {step_name}: {time.monotonic() - t0:.0f} s", flush=True)
    t0 = time.monotonic()
    for name, timed in reads(bench, args, sides).items():
        out[name].update(timed)
    for side in sides.values():
        with side.used(bench):
            bench.reset()
    print(f"      reads: {time.monotonic() - t0:.0f} s", flush=True)
    return out


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds of a measurement: every number the median of its rounds
    (nested results too), and each number's rounds under ``rounds``.

    One round is a window of five to ten seconds, and on a shared 2-core machine two such windows
    a minute apart differ by 10-30 %: comparing one round on each side would compare that noise.
    """
    out: dict[str, Any] = {}
    per_round: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if isinstance(value, dict):
            out[key] = median_of([r.get(key) or {} for r in rounds])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in rounds if isinstance(r.get(key), int | float)]
            out[key] = statistics.median(values)
            per_round[key] = values
        else:
            out[key] = value
    out["rounds"] = per_round
    return out


def compare(empty: dict[str, Any], history: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for phase, key, label, kind in FIGURES:
        a, b = empty[phase][key], history[phase][key]
        ratio = round(b / a, 2) if a else None
        if kind == "read":
            ok = b < READ_MAX_MS
        else:
            ok = ratio is not None and (
                ratio >= THROUGHPUT_MIN if kind == "throughput" else ratio <= LATENCY_MAX
            )
        rounds = [side[phase].get("rounds", {}).get(key) for side in (empty, history)]
        rows.append(
            {
                "figure": label,
                "kind": kind,
                "empty": a,
                "history": b,
                "ratio": ratio,
                "met": ok,
                "rounds": rounds,
            }
        )
    return rows


def fill(bench: Bench, n: int, today: datetime) -> dict[str, Any]:
    """The history in two halves laid out from ``today``, UTC midnight (see the module's docstring),
    with the sizes before, between and after."""
    keep = timedelta(days=pruning.PRUNE_KEEP_DAYS)
    kept_n = n // 2
    sizes = {"before_fill": history.sizes(bench)}
    end = history.db_now(bench) - timedelta(minutes=3)
    print(f"      growth: writing {n:,} finished jobs, the kept half first", flush=True)
    kept = history.fill(bench, kept_n, 1, today - keep, end, "kept")
    sizes["after_kept_half"] = history.sizes(bench)
    start = today - timedelta(days=HISTORY_DAYS)
    prunable = history.fill(bench, n - kept_n, kept_n + 1, start, today - keep, "prunable")
    sizes["after_fill"] = history.sizes(bench)
    # The attempts of the history ended before the job counters' last rollup (the pre-fill refresh
    # moved it to about now): like a farm's, they count as folded already.
    started = time.monotonic()
    stats.refresh(bench.settings, utcnow())
    insert_s = kept["insert_s"] + prunable["insert_s"]
    return {
        "jobs": n,
        "today": today.isoformat(),
        "kept": kept,
        "prunable": prunable,
        "insert_s": round(insert_s, 1),
        "jobs_per_s": round(n / max(insert_s, 1e-9)),
        "vacuum_analyze_s": round(kept["vacuum_analyze_s"] + prunable["vacuum_analyze_s"], 1),
        "checkpoint_s": round(kept["checkpoint_s"] + prunable["checkpoint_s"], 1),
        "rollup_after_fill_s": round(time.monotonic() - started, 2),
        "sizes": sizes,
    }


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    # The farm's processes keep history forever: only the harness prunes, when it means to.
    bench.extra_env = {
        "JOBYARD_RETAIN_SUCCEEDED": "0",
        "JOBYARD_RETAIN_CANCELLED": "0",
        "JOBYARD_RETAIN_DEAD": "0",
    }
    stats.refresh(bench.settings, utcnow())  # the job counters' rollup starts now, not in 1970
    with transaction(bench.settings) as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(history.TABLES)} CASCADE"))
    today = history.today_start(bench)
    filled = fill(bench, args.growth_history, today)
    sizes = filled.pop("sizes")
    bench.since = history.db_now(bench)

    print("      growth: measuring on an empty database and on the history's, in turns", flush=True)
    sides = {"empty": empty_side(bench), "history": Side(bench.settings, bench.api_key, bench.since)}
    measured = measure(bench, args, sides)
    empty, on_history = measured["empty"], measured["history"]
    ratios = compare(empty, on_history)
    # Kept before the prune, which runs for minutes more: a failure there must not lose them.
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "growth-measured.json").write_text(
        json.dumps({"measured": measured, "ratios": ratios}, default=str)
    )

    print("      growth: pruning the older half of it under load", flush=True)
    pruned = pruning.prune_under_load(bench, args, today)
    sizes["before_prune"] = pruned.pop("sizes_before")
    sizes["after_prune_vacuum"] = history.sizes(bench)

    empty_b, kept_b, after_b = (
        history.total_bytes(sizes[k]) for k in ("before_fill", "after_kept_half", "after_prune_vacuum")
    )
    verdicts = {
        "throughputs_and_latencies": all(r["met"] for r in ratios if r["kind"] != "read"),
        "reads_under_100_ms": all(
            on_history[k]["median_ms"] < READ_MAX_MS for k in ("queues", "overview", "metrics")
        ),
        "prune_under_60_s": pruned["prune_s"] < PRUNE_MAX_S,
        "prune_p99_under_2x": pruned["p99_ratio"] < PRUNE_P99_MAX,
        # Before the fill of what was pruned: after the kept half (see the module's docstring).
        "size_within_20_percent_of_before_fill": after_b <= SIZE_MAX * kept_b,
    }
    return {
        "history_jobs": args.growth_history,
        "fill": filled,
        "empty": empty,
        "history": on_history,
        "ratios": ratios,
        "prune": pruned,
        "sizes": sizes,
        "size_after_vs_before_fill": round(after_b / max(kept_b, 1), 2),
        "size_after_vs_empty": round(after_b / max(empty_b, 1), 1),
        "verdicts": verdicts,
    }
