"""Scheduler dispatch lag: N jobs due at the same moment, from their run_at to their publication.

The jobs are committed a few seconds ahead of their due time while a real scheduler (`jobyard
scheduler`) runs; each job's lag is published_at - run_at, read back from Postgres. No worker runs,
so the lag is the scheduler's alone. The peers have no equivalent (their delayed tasks wait in
Redis or in a worker's memory), so this scenario is Jobyard's only.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from bench.harness import Bench, percentile, wait_until
from core.engine.jobs import NewJob, insert_jobs, utcnow
from core.platform.db import transaction

LEAD_S = 5.0


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    n = args.dispatch_jobs
    bench.reset()
    bench.scheduler()
    due = utcnow() + timedelta(seconds=LEAD_S)
    for start in range(0, n, 1000):
        batch = [
            NewJob(type="unread_count", payload={"chat_id": "c", "user_id": "u"}, run_at=due)
            for _ in range(min(1000, n - start))
        ]
        with transaction(bench.settings) as conn:
            insert_jobs(conn, batch)
    if utcnow() >= due:
        raise RuntimeError("inserting took longer than the lead time")
    wait_until(
        lambda: bench.scalar("SELECT count(*) FROM jobs WHERE status = 'scheduled'") == 0,
        LEAD_S + 120,
        "the scheduler",
        interval=0.1,
    )
    with transaction(bench.settings) as conn:
        lags = [
            float(lag) * 1000
            for (lag,) in conn.exec_driver_sql(
                f"SELECT extract(epoch FROM published_at - run_at) FROM jobs WHERE {bench.fresh()}"
            )
        ]
    bench.stop_all()
    return {
        "jobs": n,
        "p50_ms": round(percentile(lags, 0.5), 1),
        "p99_ms": round(percentile(lags, 0.99), 1),
        "max_ms": round(max(lags), 1),
    }
