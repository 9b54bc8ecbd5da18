"""Does a large backlog of far-future jobs slow enqueue down?

    python -m bench.enqueue_backlog [--backlog 1000000] [--jobs 2000]

Against embedded Postgres and Redis: time N single-job enqueues (commit, then publish) on an empty
table, then add a backlog of scheduled rows due in 14 days, and time N enqueues again. Reports both
rates and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from core.catalog import load_job_types
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings

BACKLOG_SQL = """
INSERT INTO jobs (id, type, queue, status, payload, run_at, max_retries, created_at, updated_at)
SELECT gen_random_uuid(), 'unread_count', 'unread_count', 'scheduled',
       jsonb_build_object('chat_id', 'c' || g, 'user_id', 'u', 'op', 'increment', 'by', 1),
       now() + interval '14 days' + g * interval '1 millisecond', 5, now(), now()
FROM generate_series(1, :n) AS g
"""


def _rate(settings: Settings, broker: object, jobs: int) -> float:
    job = NewJob(type="unread_count", payload={"chat_id": "b", "user_id": "b", "op": "increment", "by": 1})
    started = time.perf_counter()
    for _ in range(jobs):
        enqueue([job], broker, settings)  # type: ignore[arg-type]
    return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    postgres, redis_server = EmbeddedPostgres(home), EmbeddedRedis(home)
    # Writing a million rows in one statement may outlast the farm's statement timeout.
    settings = Settings(
        database_url=postgres.start(),
        redis_url=redis_server.start(),
        db_statement_timeout_s=0,
        db_lock_timeout_s=0,
    )
    try:
        upgrade(settings)
        load_job_types(settings)
        broker = build_broker(settings)
        _rate(settings, broker, 200)  # warm up
        empty = _rate(settings, broker, args.jobs)
        with transaction(settings) as conn:
            conn.execute(sa.text(BACKLOG_SQL), {"n": args.backlog})
        with transaction(settings) as conn:
            conn.execute(sa.text("ANALYZE jobs"))
        loaded = _rate(settings, broker, args.jobs)
        print(f"enqueue, empty table:                {empty:8.0f} jobs/s")
        print(
            f"enqueue, {args.backlog:>9,} scheduled rows: {loaded:8.0f} jobs/s   ratio {loaded / empty:.2f}"
        )
    finally:
        redis_server.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
