"""Retention: finished jobs, the outbound rows they leave and audit entries, removed once their time is up.

``prune`` is the one way history goes. Today it deletes in bounded batches; the day history is
partitioned by day of finishing, the same call detaches and drops whole days instead, and nothing
around it changes (the scheduler's thread, the counts, the metrics).

What goes, and when (docs/operations/retention.md):

* A job that ended succeeded, cancelled or dead, once its type's retention for that status has
  passed since it finished (JOBYARD_RETAIN_SUCCEEDED, _CANCELLED, _DEAD, or the type's ``retain``),
  with its attempts, its scrapes (screenshots included), its outbound message rows that are older
  than JOBYARD_RETAIN_OUTBOUND, and its idempotency key, which is a column of the job: once the job
  is gone, the key may be used again. A job is never removed before its attempts are folded into the
  job counters (core/engine/stats.py, about two minutes after it finished), so no counter goes back.
* An outbound row whose job is gone, once JOBYARD_RETAIN_OUTBOUND has passed since it was written:
  until then a delivery or read status may still arrive for it (core/messaging/webhook.py).
* An audit entry older than JOBYARD_RETAIN_AUDIT.

Never anything else: chats, chat messages, unread counters, embeddings, opt-outs and schedules are
the farm's data, not its history.

Each batch is one short transaction that locks only the finished rows it removes, taken with
``FOR UPDATE SKIP LOCKED``: queued and running jobs are never touched, so enqueue and claim never
wait for it, and any number of schedulers prune side by side, each removing rows no other does.
The rows removed are added to ``prune_counts`` in the same transaction: the count is exact.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine import stats
from core.engine.job_types import job_types
from core.engine.jobs import utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import (
    PRUNED_STATUSES,
    audit_log,
    job_attempts,
    job_stats_rollup,
    jobs,
    outbound_messages,
    prune_counts,
    scrapes,
)

#: (table, job status or "") -> rows removed.
Removed = Counter[tuple[str, str]]


def _status_is(status: str) -> sa.TextClause:
    # Spelled out, not bound: the planner must see the status to use the partial index ix_jobs_finished
    # (a generic plan of a prepared statement would not).
    if status not in PRUNED_STATUSES:
        raise ValueError(f"{status!r} is not a final status")
    return sa.text(f"jobs.status = '{status}'")


def oldest_per_type(conn: Connection, status: str) -> dict[str, datetime | None]:
    """When the job of each type that ended ``status`` first finished, for the types that have any:
    a loose scan of ix_jobs_finished, one index probe per type whatever the history holds."""
    is_status = _status_is(status).text.removeprefix("jobs.")
    # Ordered by (type, finished_at), which only ix_jobs_finished gives: another index on type
    # would have to step over every job of a type that is not in ``status``.
    query = sa.text(
        f"""
        WITH RECURSIVE t(type, oldest) AS (
            (SELECT type, finished_at FROM jobs WHERE {is_status} ORDER BY type, finished_at LIMIT 1)
            UNION ALL
            SELECT n.type, n.finished_at FROM t, LATERAL (
                SELECT j.type, j.finished_at FROM jobs j WHERE j.{is_status} AND j.type > t.type
                ORDER BY j.type, j.finished_at LIMIT 1
            ) n
        )
        SELECT type, oldest FROM t
        """
    )
    return {row.type: row.oldest for row in conn.execute(query)}


def retention_s(type_name: str, status: str, settings: Settings) -> float:
    """Seconds a job of ``type_name`` that ended ``status`` is kept (0: forever). A type this process
    does not know (no longer deployed) is kept as the settings say."""
    job_type = job_types().get(type_name)
    if job_type is None:
        default: float = getattr(settings, f"retain_{status}_s")
        return default
    return job_type.retain.seconds(status, settings)


def _add_counts(conn: Connection, removed: Removed) -> None:
    rows = [{"table_name": t, "status": s, "pruned": n} for (t, s), n in sorted(removed.items()) if n]
    if not rows:
        return
    stmt = pg_insert(prune_counts)
    # Sorted, so two pruners add to the same rows in the same order and never deadlock.
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[prune_counts.c.table_name, prune_counts.c.status],
            set_={"pruned": prune_counts.c.pruned + stmt.excluded.pruned},
        ),
        rows,
    )


def _prune_jobs_batch(
    settings: Settings, status: str, type_name: str, before: datetime, outbound_before: datetime | None
) -> int:
    """Remove up to a batch of ``type_name`` jobs that ended ``status`` before ``before``, with what
    hangs off them, in one transaction. Returns the jobs removed."""
    with transaction(settings) as conn:
        ids = list(
            conn.execute(
                sa.select(jobs.c.id)
                .where(_status_is(status), jobs.c.type == type_name, jobs.c.finished_at < before)
                .order_by(jobs.c.finished_at)
                .limit(settings.prune_batch)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        if not ids:
            return 0
        removed: Removed = Counter()
        removed["scrapes", status] = conn.execute(
            sa.delete(scrapes).where(scrapes.c.job_id.in_(ids))
        ).rowcount
        if outbound_before is not None:
            # The younger ones stay, their job_id set to NULL by the foreign key, until their own time.
            removed["outbound_messages", status] = conn.execute(
                sa.delete(outbound_messages).where(
                    outbound_messages.c.job_id.in_(ids), outbound_messages.c.created_at < outbound_before
                )
            ).rowcount
        removed["job_attempts", status] = conn.execute(
            sa.delete(job_attempts).where(job_attempts.c.job_id.in_(ids))
        ).rowcount
        removed["jobs", status] = conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids))).rowcount
        _add_counts(conn, removed)
        return len(ids)


def _prune_rows_batch(
    settings: Settings, table: sa.Table, when: sa.Column[datetime], where: sa.ColumnElement[bool]
) -> int:
    """Remove up to a batch of ``table``'s rows matching ``where``, oldest ``when`` first."""
    with transaction(settings) as conn:
        doomed = (
            sa.select(table.c.id)
            .where(where)
            .order_by(when)
            .limit(settings.prune_batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        count = conn.execute(sa.delete(table).where(table.c.id.in_(doomed))).rowcount
        _add_counts(conn, Counter({(table.name, ""): count}))
        return int(count)


def _before(now: datetime, seconds: float) -> datetime | None:
    return now - timedelta(seconds=seconds) if seconds > 0 else None


def _batches(settings: Settings) -> Iterator[tuple[str, Callable[[], int]]]:
    """Every kind of batch due now, as (what, run once); each is run until it comes back short."""
    now = utcnow()
    # Attempts are counted by folding them into the job counters: fold what is due first, and never
    # remove a job whose attempts are not folded yet.
    stats.refresh(settings, now)
    with transaction(settings) as conn:
        folded_until: datetime = conn.execute(
            sa.select(job_stats_rollup.c.rolled_until).where(job_stats_rollup.c.id == 1)
        ).scalar_one()
        present = {status: oldest_per_type(conn, status) for status in PRUNED_STATUSES}
    outbound_before = _before(now, settings.retain_outbound_s)
    for status, oldest in present.items():
        for type_name, first in oldest.items():
            before = _before(now, retention_s(type_name, status, settings))
            if before is not None and first is not None and first < before:
                # The attempts of a job that finished after folded_until are not counted yet.
                before = min(before, folded_until)
                batch = functools.partial(
                    _prune_jobs_batch, settings, status, type_name, before, outbound_before
                )
                yield f"jobs:{status}:{type_name}", batch
    if outbound_before is not None:
        om = outbound_messages.c
        unowned = sa.and_(om.job_id.is_(None), om.created_at < outbound_before)
        yield (
            "outbound_messages",
            functools.partial(_prune_rows_batch, settings, outbound_messages, om.created_at, unowned),
        )
    audit_before = _before(now, settings.retain_audit_s)
    if audit_before is not None:
        old = audit_log.c.at < audit_before
        yield "audit_log", functools.partial(_prune_rows_batch, settings, audit_log, audit_log.c.at, old)


def prune(settings: Settings, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Remove everything past its retention, a batch per transaction, until nothing is left or
    ``should_stop()``. Returns the rows removed (jobs, outbound rows and audit entries)."""
    total = 0
    for _, run in _batches(settings):
        while not should_stop():
            done = run()
            total += done
            if done < settings.prune_batch:
                break
    return total


def prune_lag(conn: Connection, settings: Settings, now: datetime) -> dict[tuple[str, str], float]:
    """Per (table, job status or ""), how many seconds the oldest row has been past its retention
    (0: none is). Bounded like the pruning itself: index probes, whatever the history holds."""
    lag: dict[tuple[str, str], float] = {}

    def late(first: datetime | None, before: datetime | None) -> float:
        return max((before - first).total_seconds(), 0.0) if first and before else 0.0

    for status in PRUNED_STATUSES:
        oldest = oldest_per_type(conn, status)
        lag["jobs", status] = max(
            [late(first, _before(now, retention_s(t, status, settings))) for t, first in oldest.items()],
            default=0.0,
        )
    om = outbound_messages.c
    first_unowned = conn.execute(sa.select(sa.func.min(om.created_at)).where(om.job_id.is_(None))).scalar()
    lag["outbound_messages", ""] = late(first_unowned, _before(now, settings.retain_outbound_s))
    first_audit = conn.execute(sa.select(sa.func.min(audit_log.c.at))).scalar()
    lag["audit_log", ""] = late(first_audit, _before(now, settings.retain_audit_s))
    return lag
