"""How big the history is and whether it is kept in check: what /metrics shows next to the job counters.

Every figure is read from Postgres's own bookkeeping or a few rows, never by counting history:
table and index sizes (the files' sizes), live and dead tuples (pg_stat_user_tables, kept by the
statistics collector), rows per status (the open ones from the queue overview's index, the finished
ones estimated by the planner's statistics, which autovacuum's ANALYZE refreshes), rows pruned
(``prune_counts``), and the oldest open transaction, whose snapshot stops vacuum from reclaiming
what pruning deleted.

Another role's sessions show their transaction's age only to a superuser or a member of
``pg_read_all_stats``: grant it to the farm's role so that the xmin figures see every session.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.platform.tables import (
    audit_log,
    job_attempts,
    jobs,
    outbound_messages,
    prune_counts,
    schedule_firings,
    scrapes,
)

#: The tables whose rows are history (and are pruned); job_history, partitioned, is added up over its days.
HISTORY_TABLES = tuple(
    t.name for t in (jobs, job_attempts, outbound_messages, scrapes, audit_log, schedule_firings)
)

#: job_history and its days (each a table of its own to Postgres's bookkeeping).
_DAYS = "SELECT inhrelid FROM pg_inherits WHERE inhparent = CAST('job_history' AS regclass)"


@dataclass(frozen=True, slots=True)
class TableFigures:
    table: str
    #: Bytes of the table with its indexes and TOAST (scrapes' text and screenshots).
    total_bytes: int
    index_bytes: int
    live_tuples: int
    dead_tuples: int


@dataclass(frozen=True, slots=True)
class Horizon:
    """What holds back vacuum: the oldest snapshot still open."""

    #: Seconds since the oldest transaction that holds a snapshot or a transaction id began (0: none
    #: but the reader's own).
    oldest_xact_age_s: float
    #: Transactions since the oldest xmin still held by a session, replication slot or prepared transaction.
    xmin_age_xids: int


def table_figures(conn: Connection) -> list[TableFigures]:
    rows = conn.execute(
        sa.text(
            f"""
            WITH figures AS (
                SELECT CASE WHEN c.oid = ANY(CAST(:tables AS regclass[])) THEN c.relname
                            ELSE 'job_history' END AS table,
                       pg_total_relation_size(c.oid) AS total_bytes, pg_indexes_size(c.oid) AS index_bytes,
                       coalesce(s.n_live_tup, 0) AS live_tuples, coalesce(s.n_dead_tup, 0) AS dead_tuples
                FROM pg_class c
                LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                WHERE c.oid = ANY(CAST(:tables AS regclass[])) OR c.oid IN ({_DAYS})
            )
            SELECT "table", CAST(sum(total_bytes) AS bigint) AS total_bytes,
                   CAST(sum(index_bytes) AS bigint) AS index_bytes,
                   CAST(sum(live_tuples) AS bigint) AS live_tuples, CAST(sum(dead_tuples) AS bigint) AS dead_tuples
            FROM figures GROUP BY "table" ORDER BY "table"
            """
        ),
        {"tables": list(HISTORY_TABLES)},
    )
    return [TableFigures(**row._mapping) for row in rows]


def horizon(conn: Connection) -> Horizon:
    row = conn.execute(
        sa.text(
            """
            SELECT
              coalesce(extract(epoch FROM now() - (
                SELECT min(xact_start) FROM pg_stat_activity
                WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'
                  AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL)
              )), 0) AS oldest_xact_age_s,
              greatest(
                (SELECT max(age(backend_xmin)) FROM pg_stat_activity WHERE pid <> pg_backend_pid()),
                (SELECT max(age(xmin)) FROM pg_replication_slots),
                (SELECT max(age(catalog_xmin)) FROM pg_replication_slots),
                (SELECT max(age(transaction)) FROM pg_prepared_xacts),
                0
              ) AS xmin_age_xids
            """
        )
    ).one()
    return Horizon(float(row.oldest_xact_age_s), int(row.xmin_age_xids))


def pruned(conn: Connection) -> dict[tuple[str, str], int]:
    """Rows pruned since the farm began, per (table, job status or "")."""
    return {(r.table_name, r.status): r.pruned for r in conn.execute(sa.select(prune_counts))}


def estimated_rows_per_status(conn: Connection) -> dict[str, int]:
    """Rows of jobs and job_history per status as the planner's statistics estimate them (empty
    before the first ANALYZE): per table (each day of the history is one), reltuples times each
    status's share among the most common values. A row per table kept: one per day of history."""
    rows = conn.execute(
        sa.text(
            f"""
            SELECT c.reltuples, CAST(CAST(s.most_common_vals AS text) AS text[]) AS vals,
                   s.most_common_freqs AS freqs
            FROM pg_class c
            JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname
                           AND s.attname = 'status' AND NOT s.inherited
            WHERE c.oid = CAST('jobs' AS regclass) OR c.oid IN ({_DAYS})
            """
        )
    ).all()
    estimated: dict[str, int] = {}
    for row in rows:
        if row.reltuples is None or row.reltuples < 0 or not row.vals:
            continue
        for status, freq in zip(row.vals, row.freqs, strict=True):
            estimated[status] = estimated.get(status, 0) + round(row.reltuples * freq)
    return estimated
