"""Scheduler dispatch lag: N jobs due at the same moment, from their run_at to their publication.

    python -m bench.dispatch_lag [--jobs 10000] [--schedulers 1]

Starts an embedded Postgres and Redis in a temporary home, commits N `unread_count` jobs scheduled
a few seconds ahead, runs real scheduler processes (`python -m workers.scheduler`), and reads each
job's lag (published_at - run_at) back from Postgres. No worker runs, so the lag is the scheduler's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from core.db import transaction
from core.embedded import EmbeddedPostgres, EmbeddedRedis
from core.jobs import NewJob, insert_jobs, load_job_modules, utcnow
from core.migrate import upgrade
from core.models import jobs
from core.settings import Settings


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--lead-s", type=float, default=5.0, help="how far ahead the jobs are due")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    postgres, redis_server = EmbeddedPostgres(home), EmbeddedRedis(home)
    settings = Settings(database_url=postgres.start(), redis_url=redis_server.start())
    schedulers: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(settings)
        load_job_modules(settings)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
        env.update(DATABASE_URL=settings.database_url or "", REDIS_URL=settings.redis_url or "")
        env.update(JOBYARD_LOG_LEVEL="WARNING")
        for _ in range(args.schedulers):
            schedulers.append(subprocess.Popen([sys.executable, "-m", "workers.scheduler"], env=env))
        due = utcnow() + timedelta(seconds=args.lead_s)
        job = NewJob(
            type="unread_count", payload={"chat_id": "b", "user_id": "b", "op": "increment", "by": 1}
        )
        for start in range(0, args.jobs, 1000):
            with transaction(settings) as conn:
                insert_jobs(conn, [NewJob(**{**_fields(job), "run_at": due})] * min(1000, args.jobs - start))
        if utcnow() >= due:
            sys.exit("inserting took longer than the lead time; raise --lead-s")
        deadline = time.monotonic() + args.lead_s + 120
        while time.monotonic() < deadline:
            with transaction(settings) as conn:
                waiting = conn.execute(
                    sa.select(sa.func.count()).select_from(jobs).where(jobs.c.status == "scheduled")
                ).scalar_one()
            if waiting == 0:
                break
            time.sleep(0.2)
        with transaction(settings) as conn:
            lags = [
                (published - run_at).total_seconds() * 1000
                for published, run_at in conn.execute(sa.select(jobs.c.published_at, jobs.c.run_at)).all()
            ]
        print(f"jobs: {len(lags)} due at once, schedulers: {args.schedulers}")
        print(
            f"dispatch lag  p50 {_percentile(lags, 0.5):7.1f} ms   p99 {_percentile(lags, 0.99):7.1f} ms"
            f"   max {max(lags):7.1f} ms"
        )
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        redis_server.stop()
        postgres.stop()


def _fields(job: NewJob) -> dict[str, object]:
    return {f: getattr(job, f) for f in job.__struct_fields__}


if __name__ == "__main__":
    main()
