"""Retention: finished jobs, the outbound rows they leave and audit entries, removed once their time is up.

``prune`` is the one way history goes, in this order each time the scheduler's thread calls it:

1. Live rows past their retention (dead letters, which stay in ``jobs``, and any finished job not
   moved yet) go by bounded batches of JOBYARD_PRUNE_BATCH.
2. Finished jobs whose attempts are counted move to ``job_history`` (core/engine/finished.py).
3. A day of ``job_history`` goes by dropping its partition once the whole day has passed the longest
   retention of the statuses and types it holds: no DELETE, no dead tuples, nothing for vacuum.
4. A history row kept less long than its day (a type with a shorter ``retain``, or a retention of
   seconds) goes by bounded batches once its retention and once more as much (at most a day) have
   passed: a day's partition is not emptied row by row just before it is dropped.
5. Outbound rows, audit entries and the records of schedules' firings past their own retention, by
   bounded batches.

What goes, and when (docs/operations/retention.md):

* A job that ended succeeded, cancelled or dead, once its type's retention for that status has
  passed since it finished (JOBYARD_RETAIN_SUCCEEDED, _CANCELLED, _DEAD, or the type's ``retain``;
  for a moved job, at most a day later, when its day goes), with its attempts, its scrapes
  (screenshots included) and its idempotency key, which is a column of the job: once the job is
  gone, the key may be used again. A job is never removed before its attempts are folded into the
  job counters (core/engine/stats.py, about two minutes after it finished), so no counter goes back.
* An outbound row, once JOBYARD_RETAIN_OUTBOUND has passed since it was written and its job has left
  ``jobs`` (until then a delivery or read status may still arrive for it, core/messaging/webhook.py;
  a dead job's rows stay with it, so a redrive never sends twice).
* An audit entry older than JOBYARD_RETAIN_AUDIT.
* An hour of the hourly job counters (the dashboard's longer charts) older than
  JOBYARD_RETAIN_HOURLY_ROLLUPS.
* A workflow (and its steps), once none of its steps' jobs is left in ``jobs`` or the history.
* The record of a schedule's firing (which slot made which job), once its slot is older than the
  longest of JOBYARD_RETAIN_SUCCEEDED, _CANCELLED and _DEAD (kept forever if any of them is 0): the
  job it names is gone by then, and the slot, long past, is never due again.
* A webhook delivery: a delivered one after JOBYARD_RETAIN_WEBHOOK_DELIVERIES, a dead one after
  JOBYARD_RETAIN_DEAD (both from its creation); an event, once no delivery refers to it and it is
  older than JOBYARD_EVENTS_WINDOW_S, the window a stream resumes in.

Never anything else: chats, chat messages, unread counters, embeddings, opt-outs and schedules
themselves are the farm's data, not its history.

Each batch is one short transaction, followed by a rest as long as it took (JOBYARD_PRUNE_REST), that
locks only the finished rows it removes, taken with
``FOR UPDATE SKIP LOCKED``: queued and running jobs are never touched, so enqueue and claim never
wait for it, and any number of schedulers prune side by side, each removing rows no other does.
Dropping a day takes an advisory lock and checks the day is still there, so it happens once. The
rows removed are added to ``prune_counts`` in the same transaction: the count is exact.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine import finished, hourly, stats, workflows
from core.engine.job_types import job_types
from core.engine.jobs import utcnow
from core.engine.schedules import delete_old_firings
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import (
    PRUNED_STATUSES,
    audit_log,
    event_consumers,
    events,
    jobs,
    outbound_messages,
    prune_counts,
    webhook_deliveries,
)
from core.platform.tables import workflows as workflow_rows

log = structlog.get_logger(__name__)

#: (table, job status or "") -> rows removed.
Removed = Counter[tuple[str, str]]
#: How long dropping a day waits for job_history's lock (reads of finished jobs queue behind it).
DROP_LOCK_TIMEOUT_MS = 1000
LOCK_NOT_AVAILABLE = "55P03"


def _status_is(status: str) -> str:
    # Spelled out, not bound: the planner must see the status to use a partial index
    # (a generic plan of a prepared statement would not).
    if status not in PRUNED_STATUSES:
        raise ValueError(f"{status!r} is not a final status")
    return f"status = '{status}'"


def oldest_per_type(conn: Connection, status: str, table: str = "jobs") -> dict[str, datetime | None]:
    """When the job of each type that ended ``status`` first finished in ``table`` (jobs or
    job_history), for the types that have any: a loose scan of its (status, type, finished_at)
    index, one index probe per type (and day of history) whatever the history holds."""
    if table not in ("jobs", "job_history"):
        raise ValueError(table)
    is_status = _status_is(status)
    # Ordered by (type, finished_at), which only that index gives: another index on type would have
    # to step over every job of a type that is not in ``status``.
    query = sa.text(
        f"""
        WITH RECURSIVE t(type, oldest) AS (
            (SELECT type, finished_at FROM {table} WHERE {is_status} ORDER BY type, finished_at LIMIT 1)
            UNION ALL
            SELECT n.type, n.finished_at FROM t, LATERAL (
                SELECT j.type, j.finished_at FROM {table} j WHERE j.{is_status} AND j.type > t.type
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


def _before(now: datetime, seconds: float) -> datetime | None:
    return now - timedelta(seconds=seconds) if seconds > 0 else None


def history_due_before(now: datetime, seconds: float) -> datetime | None:
    """When a history row is due for a batch delete: its retention and as much again, at most a day
    more, so rows whose day is about to be dropped are left to the drop."""
    return (
        now - timedelta(seconds=seconds) - min(timedelta(seconds=seconds), finished.DAY)
        if seconds > 0
        else None
    )


# -- 1. live rows ------------------------------------------------------------------------------------


_PRUNE_LIVE = """
WITH doomed AS (
    SELECT id FROM jobs WHERE {is_status} AND type = :type AND finished_at < :before
    ORDER BY finished_at LIMIT :n FOR UPDATE SKIP LOCKED
), scraped AS (
    DELETE FROM scrapes WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
), attempts AS (
    DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
), gone AS (
    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM attempts) AS attempts,
       (SELECT count(*) FROM scraped) AS scrapes
"""


def _prune_jobs_batch(settings: Settings, status: str, type_name: str, before: datetime) -> int:
    """Remove up to a batch of ``type_name`` jobs in ``jobs`` that ended ``status`` before ``before``,
    with their attempts and scrapes, in one statement. Returns the jobs removed."""
    with transaction(settings) as conn:
        r = conn.execute(
            sa.text(_PRUNE_LIVE.format(is_status=_status_is(status))),
            {"type": type_name, "before": before, "n": settings.prune_batch},
        ).one()
        removed: Removed = Counter(
            {("jobs", status): r.jobs, ("job_attempts", status): r.attempts, ("scrapes", status): r.scrapes}
        )
        _add_counts(conn, removed)
        return int(r.jobs)


def _live_batches(settings: Settings, now: datetime, folded: datetime) -> Iterator[Callable[[], int]]:
    with transaction(settings) as conn:
        present = {status: oldest_per_type(conn, status) for status in PRUNED_STATUSES}
    for status, oldest in present.items():
        for type_name, first in oldest.items():
            before = _before(now, retention_s(type_name, status, settings))
            if before is not None and first is not None and first < before:
                # The attempts of a job that finished after ``folded`` are not counted yet.
                yield functools.partial(_prune_jobs_batch, settings, status, type_name, min(before, folded))


# -- 3. days of history ----------------------------------------------------------------------------


def _history_present(conn: Connection) -> dict[str, dict[str, datetime | None]]:
    return {status: oldest_per_type(conn, status, "job_history") for status in finished.MOVED_STATUSES}


def _kept_longest(settings: Settings, present: dict[str, dict[str, datetime | None]]) -> float | None:
    """The longest retention of what job_history holds, in seconds; None: something is kept forever."""
    longest = 0.0
    for status, oldest in present.items():
        for type_name in oldest:
            seconds = retention_s(type_name, status, settings)
            if seconds <= 0:
                return None
            longest = max(longest, seconds)
    return longest


def _drop_day(settings: Settings, name: str) -> int:
    """Count what the day holds, remove its scrapes, and drop it, in one transaction; 0 if another
    scheduler dropped it first. Returns the jobs removed."""
    with transaction(settings) as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": finished.PARTITIONS_LOCK})
        if name not in finished.partitions(conn):
            return 0
        removed: Removed = Counter()
        counts = conn.execute(
            sa.text(
                f"SELECT status, count(*) AS n, coalesce(sum(jsonb_array_length(attempt_log)), 0) AS a "
                f"FROM {name} GROUP BY status"
            )
        ).all()
        for r in counts:
            removed["jobs", r.status] += r.n
            removed["job_attempts", r.status] += r.a
        gone = conn.execute(sa.text(f"DELETE FROM scrapes WHERE job_id IN (SELECT id FROM {name})")).rowcount
        removed["scrapes", ""] += gone
        # Last, so job_history's lock is held only for the commit; and not waited for long, since
        # reads of finished jobs queue behind the wait: a day that is busy goes next pass.
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT_MS}ms'"))
        conn.execute(sa.text(f"DROP TABLE {name}"))
        _add_counts(conn, removed)
        return sum(r.n for r in counts)


def _drop_line(settings: Settings, now: datetime) -> datetime | None:
    """The days of history that end by this time (a UTC midnight) go whole; None: no day goes, since
    something the history holds is kept forever."""
    with transaction(settings) as conn:
        longest = _kept_longest(settings, _history_present(conn))
    if longest is None:
        return None
    return drop_line(now, longest)


def drop_line(now: datetime, longest_s: float) -> datetime:
    """The UTC midnight before which every day of history has passed ``longest_s`` whole."""
    cutoff = min(now - timedelta(seconds=longest_s), now)
    return finished.day_start(cutoff.astimezone(UTC).date())


def _drop_days(settings: Settings, line: datetime | None, should_stop: Callable[[], bool]) -> int:
    if line is None:
        return 0
    with transaction(settings) as conn:
        days = [
            name for name in finished.partitions(conn) if finished.day_start(finished.day_of(name)) < line
        ]
    total = 0
    for name in days:
        if should_stop():
            break
        try:
            total += _drop_day(settings, name)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            # Rolled back whole (its scrapes too): the day goes next pass.
            log.info("history_day_busy", day=name, retry_in_s=settings.prune_interval_s)
    return total


# -- 4. history rows kept less long than their day ---------------------------------------------------

_PRUNE_HISTORY = """
WITH doomed AS (
    SELECT id, finished_at FROM job_history
    WHERE {is_status} AND type = :type AND finished_at < :before AND finished_at >= :line
    ORDER BY finished_at LIMIT :n FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM job_history h USING doomed d WHERE h.id = d.id AND h.finished_at = d.finished_at
    RETURNING h.id, jsonb_array_length(h.attempt_log) AS attempts
), scraped AS (
    DELETE FROM scrapes WHERE job_id IN (SELECT id FROM gone) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT coalesce(sum(attempts), 0) FROM gone) AS attempts,
       (SELECT count(*) FROM scraped) AS scrapes
"""


def _prune_history_batch(
    settings: Settings, status: str, type_name: str, before: datetime, line: datetime | None
) -> int:
    with transaction(settings) as conn:
        r = conn.execute(
            sa.text(_PRUNE_HISTORY.format(is_status=_status_is(status))),
            {
                "type": type_name,
                "before": before,
                "line": line or datetime.min.replace(tzinfo=UTC),
                "n": settings.prune_batch,
            },
        ).one()
        removed: Removed = Counter(
            {
                ("jobs", status): r.jobs,
                ("job_attempts", status): int(r.attempts),
                ("scrapes", status): r.scrapes,
            }
        )
        _add_counts(conn, removed)
        return int(r.jobs)


def _history_batches(settings: Settings, now: datetime, line: datetime | None) -> Iterator[Callable[[], int]]:
    """Rows past their retention in days that are not dropped whole (the days before ``line`` are
    left to the drop, even while it waits for a busy day)."""
    with transaction(settings) as conn:
        present = _history_present(conn)
    for status, oldest in present.items():
        for type_name, first in oldest.items():
            before = history_due_before(now, retention_s(type_name, status, settings))
            if before is not None and first is not None and first < before:
                yield functools.partial(_prune_history_batch, settings, status, type_name, before, line)


# -- 5. outbound rows, audit entries, firings ---------------------------------------------------


def _outbound_due(before: datetime) -> sa.ColumnElement[bool]:
    om = outbound_messages.c
    return sa.and_(om.created_at < before, ~sa.exists().where(jobs.c.id == om.job_id))


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


def _row_batches(settings: Settings, now: datetime) -> Iterator[Callable[[], int]]:
    outbound_before = _before(now, settings.retain_outbound_s)
    if outbound_before is not None:
        yield functools.partial(
            _prune_rows_batch,
            settings,
            outbound_messages,
            outbound_messages.c.created_at,
            _outbound_due(outbound_before),
        )
    audit_before = _before(now, settings.retain_audit_s)
    if audit_before is not None:
        old = audit_log.c.at < audit_before
        yield functools.partial(_prune_rows_batch, settings, audit_log, audit_log.c.at, old)
    firings_before = _before(now, _longest_job_retention_s(settings))
    if firings_before is not None:
        yield functools.partial(_prune_firings_batch, settings, firings_before)
    # Webhook deliveries: delivered ones after their retention, dead ones after the dead jobs'; then
    # the events no delivery refers to, once out of the streams' window (core/events/log.py).
    d = webhook_deliveries.c
    for status, seconds in (
        ("delivered", settings.retain_webhook_deliveries_s),
        ("dead", settings.retain_dead_s),
    ):
        deliveries_before = _before(now, seconds)
        if deliveries_before is not None:
            old = sa.and_(d.status == status, d.created_at < deliveries_before)
            yield functools.partial(_prune_rows_batch, settings, webhook_deliveries, d.created_at, old)
    events_before = now - timedelta(seconds=settings.events_window_s)
    unused = sa.and_(events.c.created_at < events_before, ~sa.exists().where(d.event_id == events.c.id))
    yield functools.partial(_prune_rows_batch, settings, events, events.c.created_at, unused)
    yield functools.partial(_drop_expired_consumers, settings, now)
    hours_before = _before(now, settings.retain_hourly_rollups_s)
    if hours_before is not None:
        yield functools.partial(_prune_hours_batch, settings, hours_before)
    # A workflow goes with the last of its steps' jobs (its steps with it, by the foreign key).
    yield functools.partial(
        _prune_rows_batch, settings, workflow_rows, workflow_rows.c.created_at, workflows.jobs_gone()
    )


def _drop_expired_consumers(settings: Settings, now: datetime) -> int:
    """Forget the tenants whose streams' window ran out (a few rows: one per tenant)."""
    with transaction(settings) as conn:
        return int(conn.execute(sa.delete(event_consumers).where(event_consumers.c.until < now)).rowcount)


def _prune_hours_batch(settings: Settings, before: datetime) -> int:
    """The hourly job counters (core/engine/hourly.py) of hours before ``before``."""
    with transaction(settings) as conn:
        count = hourly.prune_hours_batch(conn, before, settings.prune_batch)
        _add_counts(conn, Counter({("job_stats_hours", ""): count}))
        return count


def _longest_job_retention_s(settings: Settings) -> float:
    """The longest retention a finished job has by the settings; 0 if one of them keeps jobs forever."""
    kept = (settings.retain_succeeded_s, settings.retain_cancelled_s, settings.retain_dead_s)
    return 0.0 if min(kept) <= 0 else max(kept)


def _prune_firings_batch(settings: Settings, before: datetime) -> int:
    with transaction(settings) as conn:
        count = delete_old_firings(conn, before, settings.prune_batch)
        _add_counts(conn, Counter({("schedule_firings", ""): count}))
        return count


#: The longest rest after one batch, whatever it took.
MAX_REST_S = 1.0


@dataclass(frozen=True)
class Pace:
    """How batches follow each other: after a full batch, a rest of ``rest`` times its duration
    (JOBYARD_PRUNE_REST), so that a long backlog of history takes a share of the database, not all
    of it. The clock and the sleep are the standard ones; a test passes its own."""

    batch: int
    rest: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def of(cls, settings: Settings) -> Pace:
        return cls(settings.prune_batch, settings.prune_rest)


def run_batches(runs: Iterator[Callable[[], int]], pace: Pace, should_stop: Callable[[], bool]) -> int:
    """Run each batch until it comes back short (or ``should_stop()``), resting after every full one."""
    total = 0
    for run in runs:
        while not should_stop():
            started = pace.clock()
            done = run()
            total += done
            if done < pace.batch:
                break
            if pace.rest > 0:
                pace.sleep(min(MAX_REST_S, pace.rest * (pace.clock() - started)))
    return total


def prune(settings: Settings, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Remove everything past its retention and move what has finished to the history (see the
    module's docstring), until nothing is left or ``should_stop()``. Returns the rows removed (jobs,
    outbound rows, audit entries and firings; moved jobs are not counted)."""
    now = utcnow()
    # Attempts are counted by folding them into the job counters: fold what is due first, and never
    # remove or move a job whose attempts are not folded yet.
    stats.refresh(settings, now)
    with transaction(settings) as conn:
        folded = finished.folded_until(conn)
    pace = Pace.of(settings)
    total = run_batches(_live_batches(settings, now, folded), pace, should_stop)
    finished.move_finished(settings, folded, should_stop)
    line = _drop_line(settings, now)
    total += _drop_days(settings, line, should_stop)
    total += run_batches(_history_batches(settings, now, line), pace, should_stop)
    total += run_batches(_row_batches(settings, now), pace, should_stop)
    return total


def prune_lag(conn: Connection, settings: Settings, now: datetime) -> dict[tuple[str, str], float]:
    """Per (table, job status or ""), how many seconds the oldest row has been past the time it should
    have gone (0: none is). Bounded like the pruning itself: index probes, whatever the history holds."""
    lag: dict[tuple[str, str], float] = {}

    def late(first: datetime | None, before: datetime | None) -> float:
        return max((before - first).total_seconds(), 0.0) if first and before else 0.0

    for status in PRUNED_STATUSES:
        live = oldest_per_type(conn, status)
        kept = oldest_per_type(conn, status, "job_history") if status in finished.MOVED_STATUSES else {}
        lag["jobs", status] = max(
            [late(first, _before(now, retention_s(t, status, settings))) for t, first in live.items()]
            + [
                late(first, history_due_before(now, retention_s(t, status, settings)))
                for t, first in kept.items()
            ],
            default=0.0,
        )
    outbound_before = _before(now, settings.retain_outbound_s)
    first_outbound = (
        conn.execute(
            sa.select(outbound_messages.c.created_at)
            .where(_outbound_due(outbound_before))
            .order_by(outbound_messages.c.created_at)
            .limit(1)
        ).scalar()
        if outbound_before is not None
        else None
    )
    lag["outbound_messages", ""] = late(first_outbound, outbound_before)
    first_audit = conn.execute(sa.select(sa.func.min(audit_log.c.at))).scalar()
    lag["audit_log", ""] = late(first_audit, _before(now, settings.retain_audit_s))
    return lag
