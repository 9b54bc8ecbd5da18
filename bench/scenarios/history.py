"""The history of the growth benchmark, written as the farm leaves it, and the sizes and vacuums
measured around it (see growth.py's docstring).

A farm keeps a succeeded or cancelled job in ``job_history`` (a partition per UTC day of finishing,
its attempts folded into ``attempt_log``) and a dead one in ``jobs`` with its ``job_attempts`` rows
(core/engine/finished.py). The fill writes them there directly, by ``INSERT ... SELECT
generate_series`` in chunks: every job of a chunk is drawn once, then the dead ones go into ``jobs``
and ``job_attempts`` and the others into ``job_history``, whose ``attempt_log`` is built from the same
attempt expressions as the ``job_attempts`` rows, in the shape the farm's move gives it.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.harness import Bench
from core.engine import finished
from core.platform.db import autocommit, transaction
from core.platform.settings import Settings

DAY_S = 86400.0
#: Jobs written per INSERT statement (each its own transaction).
CHUNK = 250_000
TYPES = ("unread_count", "ai_reply", "whatsapp_message", "embed", "scrape")
#: The tables a finished job lives in, and the one of them partitioned by day.
TABLES = ("jobs", "job_attempts", "job_history")
PROVIDER_ERROR = """'{"code": "provider_unavailable", "message": "503 from the provider"}'::jsonb"""

#: Attempt ``a.n`` of job ``j``, as a worker records it: both the rows of job_attempts (dead jobs) and
#: the entries of attempt_log (moved jobs, in the keys and order of core.engine.finished's move).
ATTEMPT = {
    "number": "a.n",
    "worker": "'bench-history'",
    "started_at": "j.finished_at - (j.attempts - a.n) * interval '10 seconds' - interval '80 ms'",
    "finished_at": "j.finished_at - (j.attempts - a.n) * interval '10 seconds'",
    "outcome": "CASE WHEN a.n < j.attempts OR j.status = 'dead' THEN 'failed' ELSE 'succeeded' END",
    "error": f"CASE WHEN a.n < j.attempts OR j.status = 'dead' THEN {PROVIDER_ERROR} END",
    "job_status": "CASE WHEN a.n < j.attempts THEN 'retrying' ELSE j.status END",
}
#: The columns of a job that both tables have (job_history adds retry_base and attempt_log).
JOB_COLUMNS = (
    "id, type, queue, status, payload, idempotency_key, run_at, attempts, max_retries, result, error, "
    "message_id, worker, created_at, updated_at, published_at, started_at, finished_at"
)
_ATTEMPT_LOG = ", ".join(f"'{key}', {sql}" for key, sql in ATTEMPT.items())

#: Jobs :lo..:hi of :count numbered from :first, finishing evenly (one slot each, at a random point of
#: it) over [:start, :end), in the order a farm writes them.
FILL_SQL = f"""
WITH src AS (
    SELECT g, random() AS r_status, random() AS r_type, random() AS r_retry,
           LEAST(CAST(:start AS timestamptz)
                     + ((g - CAST(:first AS bigint))::float8 + random()) / CAST(:count AS bigint)
                       * (CAST(:end AS timestamptz) - CAST(:start AS timestamptz)),
                 CAST(:end AS timestamptz) - interval '1 microsecond') AS f
    FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
), shaped AS (
    SELECT g, f,
           (CAST(:types AS text[]))[1 + floor(r_type * 5)::int] AS type,
           CASE WHEN r_status < 0.03 THEN 'dead' WHEN r_status < 0.05 THEN 'cancelled' ELSE 'succeeded' END
               AS status,
           CASE WHEN r_status < 0.03 THEN 4 WHEN r_status < 0.05 THEN 0 WHEN r_retry < 0.05 THEN 2 ELSE 1 END
               AS attempts
    FROM src
), j AS MATERIALIZED (
    SELECT gen_random_uuid() AS id, type, type AS queue, status,
           jsonb_build_object('chat_id', 'c' || (g % 1000), 'user_id', 'u' || (g % 97)) AS payload,
           CASE WHEN type = 'whatsapp_message' THEN 'wa-' || g END AS idempotency_key,
           f - interval '2 seconds' - attempts * interval '10 seconds' AS run_at, attempts, 3 AS max_retries,
           CASE WHEN status = 'succeeded' THEN jsonb_build_object('unread', g % 50) END AS result,
           CASE WHEN status = 'dead' THEN {PROVIDER_ERROR} END AS error,
           md5(g::text) AS message_id,
           CASE WHEN attempts > 0 THEN 'bench-history' END AS worker,
           f - interval '2 seconds' - attempts * interval '10 seconds' AS created_at, f AS updated_at,
           f - interval '2 seconds' - attempts * interval '10 seconds' + interval '5 ms' AS published_at,
           CASE WHEN attempts > 0 THEN f - interval '80 ms' END AS started_at, f AS finished_at
    FROM shaped
), dead AS (
    INSERT INTO jobs ({JOB_COLUMNS})
    SELECT {JOB_COLUMNS} FROM j WHERE status = 'dead'
    RETURNING id, type, status, attempts, finished_at
), dead_attempts AS (
    INSERT INTO job_attempts (job_id, type, {", ".join(ATTEMPT)})
    SELECT j.id, j.type, {", ".join(ATTEMPT.values())}
    FROM dead j, generate_series(1, j.attempts) AS a(n)
)
INSERT INTO job_history ({JOB_COLUMNS}, retry_base, attempt_log)
SELECT {", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))}, 0,
       coalesce((SELECT jsonb_agg(jsonb_build_object({_ATTEMPT_LOG}) ORDER BY a.n)
                 FROM generate_series(1, j.attempts) AS a(n)), '[]'::jsonb)
FROM j WHERE j.status <> 'dead'
"""

#: Per table: rows are counted apart; job_history's size is its partitions' (the parent has none).
SIZES_SQL = """
SELECT c.relname AS name, 1 AS parts, pg_total_relation_size(c.oid) AS total, pg_indexes_size(c.oid) AS indexes
FROM pg_class c WHERE c.relname IN ('jobs', 'job_attempts') AND c.relkind = 'r'
UNION ALL
SELECT 'job_history', count(*), coalesce(sum(pg_total_relation_size(i.inhrelid)), 0),
       coalesce(sum(pg_indexes_size(i.inhrelid)), 0)
FROM pg_inherits i WHERE i.inhparent = 'job_history'::regclass
"""


def unbounded(settings: Settings) -> Settings:
    """Writing, vacuuming and pruning millions of rows outlasts the farm's statement timeout."""
    return settings.replace(db_statement_timeout_s=0, db_lock_timeout_s=0)


def db_now(bench: Bench) -> datetime:
    value: datetime = bench.scalar("SELECT clock_timestamp()")
    return value


def today_start(bench: Bench) -> datetime:
    """The start of today, UTC midnight, by Postgres's clock."""
    value: datetime = bench.scalar(
        "SELECT date_trunc('day', clock_timestamp() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    )
    return value


def days(start: datetime, end: datetime) -> list[date]:
    """The UTC days that [start, end) touches."""
    first = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def partitions(bench: Bench) -> list[str]:
    with transaction(bench.settings) as conn:
        return finished.partitions(conn)


def kept_jobs(bench: Bench) -> int:
    """The history's jobs, in both tables (not the measurements' own, see ``Bench.fresh``): a count
    of millions of rows, which outlasts the farm's statement timeout on a busy machine."""
    sql = (
        f"SELECT (SELECT count(*) FROM jobs WHERE NOT ({bench.fresh()})) "
        f"+ (SELECT count(*) FROM job_history WHERE NOT ({bench.fresh()}))"
    )
    with transaction(unbounded(bench.settings)) as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def prune_counts(bench: Bench) -> Counter[str]:
    """What the farm's prune_counts say was removed so far, per "table/status"."""
    with transaction(bench.settings) as conn:
        rows = conn.execute(sa.text("SELECT table_name, status, pruned FROM prune_counts")).all()
    return Counter({f"{r.table_name}/{r.status}" if r.status else r.table_name: int(r.pruned) for r in rows})


def sizes(bench: Bench) -> dict[str, dict[str, int]]:
    """Per table of TABLES: rows, bytes with and without indexes (job_history: summed over its
    partitions, and how many there are)."""
    with transaction(bench.settings) as conn:
        rows = {r.name: r for r in conn.execute(sa.text(SIZES_SQL))}
        count = {
            name: int(conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()) for name in TABLES
        }
    out = {}
    for name in TABLES:
        r = rows[name]
        out[name] = {
            "rows": count[name],
            "total_bytes": int(r.total),
            "index_bytes": int(r.indexes),
            "table_bytes": int(r.total) - int(r.indexes),
        }
    out["job_history"]["partitions"] = int(rows["job_history"].parts)
    return out


def total_bytes(sizes_: dict[str, dict[str, int]]) -> int:
    return sum(s["total_bytes"] for s in sizes_.values())


def vacuum(bench: Bench, analyze: bool = True) -> float:
    """VACUUM (ANALYZE) the three tables; on the partitioned job_history it goes through every
    partition (and ANALYZE also samples the whole of it for the parent's statistics)."""
    started = time.monotonic()
    with autocommit(unbounded(bench.settings)) as conn:
        conn.exec_driver_sql(f"VACUUM {'ANALYZE ' if analyze else ''}{', '.join(TABLES)}")
    return round(time.monotonic() - started, 1)


def fill(bench: Bench, n: int, first: int, start: datetime, end: datetime, label: str) -> dict[str, Any]:
    """Write ``n`` finished jobs numbered from ``first`` (their idempotency keys are unique across
    calls that do not overlap), finishing evenly over [start, end), then VACUUM ANALYZE, as
    autovacuum leaves a table that has settled. The partitions of every day it covers are made first."""
    settings = unbounded(bench.settings)
    with transaction(settings) as conn:
        made = finished.ensure_partitions(conn, days(start, end))
    started = time.monotonic()
    params = {"start": start, "end": end, "first": first, "count": n, "types": list(TYPES)}
    for lo in range(first, first + n, CHUNK):
        hi = min(first + n - 1, lo + CHUNK - 1)
        with transaction(settings) as conn:
            conn.execute(sa.text(FILL_SQL), {**params, "lo": lo, "hi": hi})
        print(
            f"      history ({label}): {hi - first + 1:,} / {n:,} jobs ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    insert_s = time.monotonic() - started
    return {
        "jobs": n,
        "finished_from": start.isoformat(),
        "finished_to": end.isoformat(),
        "partitions_made": len(made),
        "insert_s": round(insert_s, 1),
        "jobs_per_s": round(n / max(insert_s, 1e-9)),
        "vacuum_analyze_s": vacuum(bench),
        "checkpoint_s": checkpoint(bench),
    }


def checkpoint(bench: Bench) -> float:
    """Write out what the fill and its vacuum left dirty: a farm writes its history over weeks, and its
    checkpoints with it; the measurements after the fill must not pay for gigabytes written a minute
    before them."""
    started = time.monotonic()
    with autocommit(unbounded(bench.settings)) as conn:
        conn.exec_driver_sql("CHECKPOINT")
    return round(time.monotonic() - started, 1)
