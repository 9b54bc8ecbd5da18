"""The history of the growth benchmark: finished jobs written straight into jobs and job_attempts,
as a farm leaves them (see growth.py's docstring), and the sizes and vacuums measured around them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bench.harness import Bench
from core.engine import stats
from core.engine.jobs import utcnow
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings

DAY_S = 86400.0
#: Rows written per INSERT statement (each its own transaction).
CHUNK = 250_000
TYPES = ("unread_count", "ai_reply", "whatsapp_message", "embed", "scrape")

FILL_SQL = """
WITH src AS (
    SELECT g, random() AS r_status, random() AS r_type, random() AS r_retry,
           CAST(:t0 AS timestamptz) - interval '3 minutes'
               - ((CAST(:n AS bigint) - g)::float8 / CAST(:n AS bigint)) * interval '30 days' - random() * interval '1 second' AS f
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
), shaped AS (
    SELECT g, f,
           (CAST(:types AS text[]))[1 + floor(r_type * 5)::int] AS type,
           CASE WHEN r_status < 0.03 THEN 'dead' WHEN r_status < 0.05 THEN 'cancelled' ELSE 'succeeded' END
               AS status,
           CASE WHEN r_status < 0.03 THEN 4 WHEN r_status < 0.05 THEN 0 WHEN r_retry < 0.05 THEN 2 ELSE 1 END
               AS attempts
    FROM src
), j AS (
    INSERT INTO jobs (id, type, queue, status, payload, idempotency_key, run_at, attempts, max_retries,
                      result, error, message_id, worker, created_at, updated_at, published_at, started_at,
                      finished_at)
    SELECT gen_random_uuid(), type, type, status,
           jsonb_build_object('chat_id', 'c' || (g % 1000), 'user_id', 'u' || (g % 97)),
           CASE WHEN type = 'whatsapp_message' THEN 'wa-' || g END,
           f - interval '2 seconds' - attempts * interval '10 seconds', attempts, 3,
           CASE WHEN status = 'succeeded' THEN jsonb_build_object('unread', g % 50) END,
           CASE WHEN status = 'dead'
                THEN '{"code": "provider_unavailable", "message": "503 from the provider"}'::jsonb END,
           md5(g::text),
           CASE WHEN attempts > 0 THEN 'bench-history' END,
           f - interval '2 seconds' - attempts * interval '10 seconds', f,
           f - interval '2 seconds' - attempts * interval '10 seconds' + interval '5 ms',
           CASE WHEN attempts > 0 THEN f - interval '80 ms' END, f
    FROM shaped
    RETURNING id, type, status, attempts, finished_at
)
INSERT INTO job_attempts (job_id, number, type, worker, started_at, finished_at, outcome, error, job_status)
SELECT j.id, a.n, j.type, 'bench-history',
       j.finished_at - (j.attempts - a.n) * interval '10 seconds' - interval '80 ms',
       j.finished_at - (j.attempts - a.n) * interval '10 seconds',
       CASE WHEN a.n < j.attempts OR j.status = 'dead' THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN a.n < j.attempts OR j.status = 'dead'
            THEN '{"code": "provider_unavailable", "message": "503 from the provider"}'::jsonb END,
       CASE WHEN a.n < j.attempts THEN 'retrying' ELSE j.status END
FROM j, generate_series(1, j.attempts) AS a(n)
"""

SIZES_SQL = """
SELECT relname, pg_total_relation_size(oid) AS total, pg_indexes_size(oid) AS indexes
FROM pg_class WHERE relname IN ('jobs', 'job_attempts') AND relkind = 'r'
"""


def unbounded(settings: Settings) -> Settings:
    """Writing, vacuuming and pruning millions of rows outlasts the farm's statement timeout."""
    return settings.replace(db_statement_timeout_s=0, db_lock_timeout_s=0)


def db_now(bench: Bench) -> datetime:
    value: datetime = bench.scalar("SELECT clock_timestamp()")
    return value


def sizes(bench: Bench) -> dict[str, dict[str, int]]:
    with transaction(bench.settings) as conn:
        rows = conn.execute(sa.text(SIZES_SQL)).all()
        count = {
            name: int(conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("jobs", "job_attempts")
        }
    return {
        r.relname: {
            "rows": count[r.relname],
            "total_bytes": int(r.total),
            "index_bytes": int(r.indexes),
            "table_bytes": int(r.total) - int(r.indexes),
        }
        for r in rows
    }


def vacuum(bench: Bench, analyze: bool = True) -> float:
    started = time.monotonic()
    with autocommit(unbounded(bench.settings)) as conn:
        conn.exec_driver_sql(f"VACUUM {'ANALYZE ' if analyze else ''}jobs, job_attempts")
    return round(time.monotonic() - started, 1)


def fill(bench: Bench, n: int) -> dict[str, Any]:
    """Write ``n`` finished jobs with their attempts, finishing over the last 30 days."""
    settings = unbounded(bench.settings)
    t0 = db_now(bench)
    started = time.monotonic()
    for lo in range(1, n + 1, CHUNK):
        hi = min(n, lo + CHUNK - 1)
        with transaction(settings) as conn:
            conn.execute(sa.text(FILL_SQL), {"t0": t0, "n": n, "lo": lo, "hi": hi, "types": list(TYPES)})
        print(f"      history: {hi:,} / {n:,} jobs ({time.monotonic() - started:.0f} s)", flush=True)
    insert_s = time.monotonic() - started
    vacuum_s = vacuum(bench)
    # The attempts of the history ended before the job counters' last rollup (the pre-fill refresh
    # moved it to now): like a farm's, they count as folded already.
    started = time.monotonic()
    stats.refresh(bench.settings, utcnow())
    return {
        "jobs": n,
        "insert_s": round(insert_s, 1),
        "jobs_per_s": round(n / max(insert_s, 1e-9)),
        "vacuum_analyze_s": vacuum_s,
        "rollup_after_fill_s": round(time.monotonic() - started, 2),
    }
