"""The history's metrics on /metrics: rows per status, rows pruned, prune lag, table and index sizes,
dead tuples and the oldest open transaction (docs/operations/retention.md; alert rules in
deploy/observability/). Each is read by a bounded query (core/engine/history.py, core/engine/retention.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.engine import Connection

from core.engine import history
from core.engine.queues import Overview
from core.engine.retention import prune_lag
from core.platform.settings import Settings
from core.platform.tables import JOB_STATUSES, OPEN_STATUSES, PRUNED_STATUSES


def history_families(
    conn: Connection, settings: Settings, overview: Overview, now: datetime
) -> Iterator[Metric]:
    rows = GaugeMetricFamily(
        "jobyard_jobs_rows",
        "Rows of jobs per status: counted for the open statuses, estimated by Postgres's planner "
        "statistics (refreshed by autovacuum) for succeeded and cancelled.",
        labels=["status"],
    )
    estimated = history.estimated_rows_per_status(conn)
    for status in JOB_STATUSES:
        if status in OPEN_STATUSES:
            count = sum(getattr(row, status) for row in overview.items)
        else:
            count = estimated.get(status, 0)
        rows.add_metric([status], count)
    yield rows

    pruned = CounterMetricFamily(
        "jobyard_pruned_rows",
        "Rows removed by retention since the farm began, per table and the status of the job they "
        "belonged to (empty for outbound rows whose job had gone, and audit entries).",
        labels=["table", "status"],
    )
    counts = history.pruned(conn)
    known = {("jobs", s) for s in PRUNED_STATUSES} | {("outbound_messages", ""), ("audit_log", "")}
    for table, status in sorted(known | set(counts)):
        pruned.add_metric([table, status], counts.get((table, status), 0))
    yield pruned

    lag = GaugeMetricFamily(
        "jobyard_prune_lag_seconds",
        "How long the oldest row has been past its retention (0: none is); grows when pruning stops "
        "or falls behind.",
        labels=["table", "status"],
    )
    for (table, status), seconds in sorted(prune_lag(conn, settings, now).items()):
        lag.add_metric([table, status], seconds)
    yield lag

    yield from _table_families(history.table_figures(conn))

    horizon = history.horizon(conn)
    yield GaugeMetricFamily(
        "jobyard_postgres_oldest_transaction_seconds",
        "Age of the oldest open transaction holding a snapshot: while it is open, vacuum cannot "
        "reclaim the rows deleted after it began.",
        value=horizon.oldest_xact_age_s,
    )
    yield GaugeMetricFamily(
        "jobyard_postgres_xmin_age_transactions",
        "Transactions since the oldest xmin a session, replication slot or prepared transaction holds.",
        value=horizon.xmin_age_xids,
    )


def _table_families(tables: list[history.TableFigures]) -> Iterator[Metric]:
    families = [
        ("jobyard_table_size_bytes", "Bytes of a history table with its indexes and TOAST.", "total_bytes"),
        ("jobyard_table_index_size_bytes", "Bytes of a history table's indexes.", "index_bytes"),
        ("jobyard_table_live_tuples", "Live rows of a history table (Postgres's statistics).", "live_tuples"),
        (
            "jobyard_table_dead_tuples",
            "Dead rows of a history table not yet vacuumed (Postgres's statistics).",
            "dead_tuples",
        ),
    ]
    for name, doc, attr in families:
        family = GaugeMetricFamily(name, doc, labels=["table"])
        for t in tables:
            family.add_metric([t.table], getattr(t, attr))
        yield family
