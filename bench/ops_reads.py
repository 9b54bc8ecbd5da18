"""What do /metrics, /v1/queues and the dashboard's overview cost on a farm with a long history?

    python -m bench.ops_reads [--history 1000000] [--recent 30000] [--scheduled 200000]

Against embedded Postgres and Redis: a history of finished jobs (one attempt each; 3 % dead) spread
over a week, of which ``--recent`` finished in the last three minutes (so they are not rolled up
yet), a backlog of scheduled jobs due in 14 days, and a few hundred queued. Times the first rollup
(once per database, folding the whole history), then the reads, each the median of 15 runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from core.catalog import load_job_types
from core.engine import stats as job_stats
from core.engine.broker import redis_client
from core.engine.jobs import utcnow
from core.engine.queues import queue_overview, read_overview
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.db import get_engine, snapshot, transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings

HISTORY_SQL = """
INSERT INTO jobs (id, type, queue, status, payload, run_at, max_retries, attempts, created_at,
                  updated_at, started_at, finished_at, error, business_key)
SELECT gen_random_uuid(), t.type, t.type, CASE WHEN g % 33 = 0 THEN 'dead' ELSE 'succeeded' END,
       '{}'::jsonb, f - interval '1 second', 3, 1, f - interval '1 second', f, f - interval '50 ms', f,
       CASE WHEN g % 33 = 0 THEN '{"code": "provider_unavailable", "message": "503"}'::jsonb END,
       CASE WHEN g <= :recent THEN 'recent' END
FROM generate_series(1, :n) AS g,
     LATERAL (SELECT (ARRAY['unread_count', 'ai_reply', 'whatsapp_message', 'embed'])[1 + g % 4] AS type) t,
     LATERAL (SELECT now() - interval '3 minutes' - random() * interval '7 days' AS f) ff(f)
"""
ATTEMPTS_SQL = """
INSERT INTO job_attempts (job_id, number, type, worker, started_at, finished_at, outcome, job_status)
SELECT id, 1, type, 'bench', started_at, finished_at,
       CASE WHEN status = 'dead' THEN 'failed' ELSE 'succeeded' END, status
FROM jobs WHERE status IN ('succeeded', 'dead')
"""
#: Writing the history takes minutes on a small machine: the recent jobs are made recent at the end.
RECENT_SQL = """
WITH moved AS (
    UPDATE jobs SET finished_at = clock_timestamp() - random() * interval '3 minutes'
    WHERE business_key = 'recent' RETURNING id, finished_at
)
UPDATE job_attempts a SET finished_at = m.finished_at, started_at = m.finished_at - interval '50 ms'
FROM moved m WHERE a.job_id = m.id
"""
BACKLOG_SQL = """
INSERT INTO jobs (id, type, queue, status, payload, run_at, max_retries, created_at, updated_at, published_at)
SELECT gen_random_uuid(), 'whatsapp_message', 'whatsapp_message', CASE WHEN g <= 300 THEN 'queued' ELSE 'scheduled' END,
       '{}'::jsonb, now() + CASE WHEN g <= 300 THEN interval '0' ELSE interval '14 days' END, 5, now(), now(),
       CASE WHEN g <= 300 THEN now() END
FROM generate_series(1, :n) AS g
"""


def _median_ms(fn: Callable[[], object], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--recent", type=int, default=30_000)
    parser.add_argument("--scheduled", type=int, default=200_000)
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
    client = redis_client(settings, socket_timeout=2)
    try:
        upgrade(settings)
        load_job_types(settings)
        started = time.perf_counter()
        with transaction(settings) as conn:
            conn.execute(sa.text(HISTORY_SQL), {"n": args.history, "recent": args.recent})
            conn.execute(sa.text(ATTEMPTS_SQL))
            conn.execute(sa.text(BACKLOG_SQL), {"n": args.scheduled})
        with get_engine(settings).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))  # as autovacuum leaves a table that has settled
        with transaction(settings) as conn:
            conn.execute(sa.text(RECENT_SQL))
        print(f"history written in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        job_stats.refresh(settings, utcnow())
        print(f"first rollup (the whole history):   {time.perf_counter() - started:8.2f} s")

        def scrape() -> object:
            now = utcnow()
            job_stats.refresh(settings, now)
            with snapshot(settings) as conn:
                job_stats.counters(job_stats.totals(conn))
                return queue_overview(conn, client, settings.redis_namespace, now, 30.0)

        def dashboard() -> object:
            now = utcnow()
            job_stats.refresh(settings, now)
            with snapshot(settings) as conn:
                queue_overview(conn, client, settings.redis_namespace, now, 30.0)
                return job_stats.per_minute(conn, now)

        print(f"/metrics job metrics (median):      {_median_ms(scrape):8.1f} ms")
        print(
            f"/v1/queues (median):                {_median_ms(lambda: read_overview(settings, client)):8.1f} ms"
        )
        print(f"dashboard overview + chart (median): {_median_ms(dashboard):7.1f} ms")
        print(
            f"  with {args.history:,} finished jobs, {args.recent:,} of them in the last 3 minutes (not rolled up), "
            f"{args.scheduled:,} scheduled"
        )
    finally:
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(home, ignore_errors=True)  # a million-job history is 1.6 GB on disk


if __name__ == "__main__":
    main()
