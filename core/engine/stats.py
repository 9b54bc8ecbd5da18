"""Job counters and throughput, read from the attempts Postgres already records.

Every finished attempt row says when it ended, how (``outcome``) and what it left its job as
(``job_status``), so counting needs no extra write by the workers. To stay cheap however long the
farm runs, attempts that ended more than ``ROLLUP_LAG`` ago are folded, a minute at a time, into
per-minute rows (the throughput chart) and running totals (the Prometheus counters). A read is
then the totals plus the few minutes of attempts since, in one snapshot, so every API process
computes the same numbers, and a restart loses nothing.

Whoever reads first after a minute closes does the rollup; the single state row is locked with
SKIP LOCKED, so concurrent readers never fold the same minute twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.hourly import hour_of, hours_rolled_until, roll_hours
from core.engine.jobs import JobStatus
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import (
    job_attempts,
    job_stats_hours,
    job_stats_minutes,
    job_stats_rollup,
    job_stats_totals,
    jobs,
)

#: Upper bounds (seconds) of the attempt duration histogram. Totals store one count per bucket, so
#: changing these needs a migration that resets job_stats_totals.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_BOUNDS_US = [round(b * 1_000_000) for b in DURATION_BUCKETS_S]
#: An attempt is stamped finished in the statement just before its transaction commits, so one that
#: ended this long ago is committed (and host clocks agree this well): only then is it rolled up.
ROLLUP_LAG = timedelta(minutes=2)
#: Per-minute rows kept for the throughput chart; the totals keep everything.
KEEP_MINUTES = timedelta(days=1)
#: Outcomes of attempts that failed (the "failed" of the throughput figures). Rate-limited waits,
#: postponements and runs handed back at shutdown are not failures.
FAILED_OUTCOMES = ("failed", "timed_out", "lost")

#: (type, outcome, job_status)
Key = tuple[str, str, str]


@dataclass(slots=True)
class Tally:
    attempts: int = 0
    duration_s: float = 0.0
    #: Attempts per duration bucket, not cumulative; the last is above every bound.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS_S) + 1))

    def add(self, attempts: int, duration_s: float, buckets: list[int]) -> None:
        self.attempts += attempts
        self.duration_s += duration_s
        self.buckets = [a + b for a, b in zip(self.buckets, buckets, strict=True)]


def attempt_type() -> sa.ColumnElement[str]:
    """The attempt's job type: copied on the row by the claim; looked up for older attempts."""
    of_job = sa.select(jobs.c.type).where(jobs.c.id == job_attempts.c.job_id).scalar_subquery()
    return sa.func.coalesce(job_attempts.c.type, of_job)


def _aggregate(
    conn: Connection, since: datetime, until: datetime | None
) -> dict[tuple[datetime, str, str, str], Tally]:
    """Finished attempts with since <= finished_at < until, per (minute, type, outcome, job_status).

    Reads job_attempts alone, by its finished_at index: the cost follows the window, not the history.
    """
    duration_us = sa.cast(
        sa.func.extract("epoch", job_attempts.c.finished_at - job_attempts.c.started_at) * 1_000_000,
        sa.BigInteger,
    )
    # width_bucket counts the bounds <= its argument; given d - 1 in whole microseconds that is the
    # number of bounds < d, i.e. the first bucket whose bound is >= d: Prometheus's `le`.
    bucket = sa.func.width_bucket(duration_us - 1, sa.literal(_BOUNDS_US, ARRAY(sa.BigInteger)))
    minute = sa.func.date_trunc("minute", job_attempts.c.finished_at)
    type_ = attempt_type()
    # Attempts older than the job_status column: a success still says what it left its job as.
    status = sa.func.coalesce(
        job_attempts.c.job_status,
        sa.case((job_attempts.c.outcome == JobStatus.SUCCEEDED, JobStatus.SUCCEEDED.value), else_=""),
    )
    where = [job_attempts.c.finished_at >= since]
    if until is not None:
        where.append(job_attempts.c.finished_at < until)
    query = (
        sa.select(
            minute.label("minute"),
            type_.label("type"),
            job_attempts.c.outcome,
            status.label("job_status"),
            bucket.label("bucket"),
            sa.func.count().label("attempts"),
            sa.func.sum(duration_us).label("duration_us"),
        )
        .where(*where)
        .group_by(minute, type_, job_attempts.c.outcome, status, bucket)
    )
    out: dict[tuple[datetime, str, str, str], Tally] = defaultdict(Tally)
    for row in conn.execute(query):
        buckets = [0] * (len(DURATION_BUCKETS_S) + 1)
        buckets[row.bucket] = row.attempts
        out[(row.minute, row.type, row.outcome, row.job_status)].add(
            row.attempts, int(row.duration_us or 0) / 1_000_000, buckets
        )
    return out


def roll_up(conn: Connection, now: datetime) -> bool:
    """Fold the attempts that ended in whole minutes before ``now - ROLLUP_LAG`` into the stats tables.

    Commit right after. Returns False when there was nothing to fold or another process is at it.
    """
    state = conn.execute(
        sa.select(job_stats_rollup.c.rolled_until)
        .where(job_stats_rollup.c.id == 1)
        .with_for_update(skip_locked=True)
    ).first()
    if state is None:
        return False
    target = (now - ROLLUP_LAG).replace(second=0, microsecond=0)
    if target <= state.rolled_until:
        return False
    per_minute = _aggregate(conn, state.rolled_until, target)
    keep_from = now - KEEP_MINUTES
    minute_rows = [
        {"minute": m, "type": t, "outcome": o, "job_status": s, "attempts": tally.attempts}
        for (m, t, o, s), tally in per_minute.items()
        if m >= keep_from
    ]
    if minute_rows:
        conn.execute(sa.insert(job_stats_minutes), minute_rows)
    _add_to_totals(conn, per_minute)
    conn.execute(sa.update(job_stats_rollup).where(job_stats_rollup.c.id == 1).values(rolled_until=target))
    # The hours these minutes complete, before any minute row goes (core/engine/hourly.py).
    roll_hours(conn, now)
    conn.execute(sa.delete(job_stats_minutes).where(job_stats_minutes.c.minute < keep_from))
    return True


def _add_to_totals(conn: Connection, per_minute: dict[tuple[datetime, str, str, str], Tally]) -> None:
    added: dict[Key, Tally] = defaultdict(Tally)
    for (_, t, o, s), tally in per_minute.items():
        added[(t, o, s)].add(tally.attempts, tally.duration_s, tally.buckets)
    if not added:
        return
    # The rollup row's lock serialises rollups, so a read-modify-write of the totals is safe.
    current = _totals_rows(conn)
    for key, tally in added.items():
        current[key].add(tally.attempts, tally.duration_s, tally.buckets)
    rows = [
        {
            "type": t,
            "outcome": o,
            "job_status": s,
            "attempts": current[(t, o, s)].attempts,
            "duration_s": current[(t, o, s)].duration_s,
            "duration_buckets": current[(t, o, s)].buckets,
        }
        for (t, o, s) in added
    ]
    stmt = pg_insert(job_stats_totals)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[
                job_stats_totals.c.type,
                job_stats_totals.c.outcome,
                job_stats_totals.c.job_status,
            ],
            set_={
                "attempts": stmt.excluded.attempts,
                "duration_s": stmt.excluded.duration_s,
                "duration_buckets": stmt.excluded.duration_buckets,
            },
        ),
        rows,
    )


def _totals_rows(conn: Connection) -> dict[Key, Tally]:
    out: dict[Key, Tally] = defaultdict(Tally)
    for row in conn.execute(sa.select(job_stats_totals)):
        out[(row.type, row.outcome, row.job_status)].add(
            row.attempts, row.duration_s, list(row.duration_buckets)
        )
    return out


def rolled_until(conn: Connection) -> datetime:
    """Attempts that ended before this are folded into the counters."""
    value: datetime = conn.execute(
        sa.select(job_stats_rollup.c.rolled_until).where(job_stats_rollup.c.id == 1)
    ).scalar_one()
    return value


def totals(conn: Connection) -> dict[Key, Tally]:
    """Every finished attempt ever, per (type, outcome, job_status). Read in a snapshot (core.platform.db)."""
    out = _totals_rows(conn)
    for (_, t, o, s), tally in _aggregate(conn, rolled_until(conn), None).items():
        out[(t, o, s)].add(tally.attempts, tally.duration_s, tally.buckets)
    return out


@dataclass(frozen=True, slots=True)
class MinutePoint:
    #: The start of the point's minute (of its hour, or day, for the longer charts).
    minute: datetime
    succeeded: int
    #: Attempts that failed (FAILED_OUTCOMES), retried or not.
    failed: int
    #: Jobs that went to the dead letters.
    dead: int


Slot = Callable[[datetime], datetime]


class _Counts:
    """Succeeded, failed and dead per slot (a minute, an hour or a day)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.by_slot: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])

    def add(self, moment: datetime, outcome: str, job_status: str, attempts: int) -> None:
        counts = self.by_slot[self.slot(moment)]
        if outcome == "succeeded":
            counts[0] += attempts
        elif outcome in FAILED_OUTCOMES:
            counts[1] += attempts
        if job_status == JobStatus.DEAD:
            counts[2] += attempts

    def add_since(self, conn: Connection, since: datetime) -> None:
        """The attempts not folded yet (since the rollup's ``rolled_until``, or ``since`` if later)."""
        for (m, _, o, s), tally in _aggregate(conn, max(rolled_until(conn), since), None).items():
            self.add(m, o, s, tally.attempts)

    def points(self, first: datetime, step: timedelta, count: int) -> list[MinutePoint]:
        out = []
        for i in range(count):
            start = first + i * step
            succeeded, failed, dead = self.by_slot.get(start, [0, 0, 0])
            out.append(MinutePoint(start, succeeded, failed, dead))
        return out


def _minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def per_minute(conn: Connection, now: datetime, minutes: int = 60) -> list[MinutePoint]:
    """Succeeded and failed attempts per minute over the last ``minutes``, oldest first, every minute
    present (zeros included); the last point is the current, unfinished minute."""
    since = _minute_of(now) - timedelta(minutes=minutes - 1)
    counts = _Counts(_minute_of)
    rows = conn.execute(
        sa.select(job_stats_minutes).where(
            job_stats_minutes.c.minute >= since, job_stats_minutes.c.minute < rolled_until(conn)
        )
    )
    for row in rows:
        counts.add(row.minute, row.outcome, row.job_status, row.attempts)
    counts.add_since(conn, since)
    return counts.points(since, timedelta(minutes=1), minutes)


def _hourly(conn: Connection, since: datetime, counts: _Counts) -> None:
    """Every attempt that ended since ``since`` (an hour's start) into ``counts``: the hourly rows,
    then the minute rows of the hours not summed yet, then the attempts not folded yet."""
    hours_until = hours_rolled_until(conn)
    h, m = job_stats_hours.c, job_stats_minutes.c
    for row in conn.execute(sa.select(job_stats_hours).where(h.hour >= since, h.hour < hours_until)):
        counts.add(row.hour, row.outcome, row.job_status, row.attempts)
    minutes = sa.select(job_stats_minutes).where(
        m.minute >= max(since, hours_until), m.minute < rolled_until(conn)
    )
    for row in conn.execute(minutes):
        counts.add(row.minute, row.outcome, row.job_status, row.attempts)
    counts.add_since(conn, since)


def per_hour(conn: Connection, now: datetime, hours: int = 24) -> list[MinutePoint]:
    """Succeeded and failed attempts per hour over the last ``hours`` (the last one unfinished),
    oldest first, every hour present: from the hourly rollups, kept JOBYARD_RETAIN_HOURLY_ROLLUPS."""
    since = hour_of(now) - timedelta(hours=hours - 1)
    counts = _Counts(hour_of)
    _hourly(conn, since, counts)
    return counts.points(since, timedelta(hours=1), hours)


def _day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def per_day(conn: Connection, now: datetime, days: int = 30) -> list[MinutePoint]:
    """Succeeded and failed attempts per UTC day over the last ``days`` (today unfinished), oldest
    first, from the hourly rollups."""
    since = _day_of(now) - timedelta(days=days - 1)
    counts = _Counts(_day_of)
    _hourly(conn, since, counts)
    return counts.points(since, timedelta(days=1), days)


@dataclass(slots=True)
class Counters:
    """The totals as the Prometheus counters show them."""

    #: Jobs that reached succeeded or dead, per (type, that status); a job redriven and finished
    #: again counts again.
    finished: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: Finished attempts per (type, outcome).
    attempts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: Failed attempts that left their job to be tried again, per type.
    retries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Run time of the finished attempts per (type, outcome).
    durations: dict[tuple[str, str], Tally] = field(default_factory=lambda: defaultdict(Tally))


def counters(per_key: dict[Key, Tally]) -> Counters:
    out = Counters()
    for (t, o, s), tally in per_key.items():
        out.attempts[(t, o)] += tally.attempts
        out.durations[(t, o)].add(tally.attempts, tally.duration_s, tally.buckets)
        if s in (JobStatus.SUCCEEDED, JobStatus.DEAD):
            out.finished[(t, s)] += tally.attempts
        if o in FAILED_OUTCOMES and s in (JobStatus.RETRYING, JobStatus.QUEUED):
            out.retries[t] += tally.attempts
    return out


def refresh(settings: Settings, now: datetime) -> None:
    """Roll up what is due, in a transaction of its own; call before reading in a snapshot."""
    with transaction(settings) as conn:
        roll_up(conn, now)
