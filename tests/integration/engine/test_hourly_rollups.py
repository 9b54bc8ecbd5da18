"""Hourly job counters on real Postgres: minute rows of whole hours summed per hour once, from the
minute rows alone (never the attempts); the 24-hour and 30-day series that read them; the minute
rollup carrying attempts all the way into hours; and retention removing hours past 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from core.engine import stats as job_stats
from core.engine.hourly import roll_hours
from core.engine.jobs import utcnow
from core.engine.retention import prune
from core.platform.db import snapshot, transaction
from core.platform.settings import Settings
from core.platform.tables import job_stats_hours, job_stats_minutes, job_stats_rollup
from tests.integration.engine.test_job_stats import _attempt

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _minutes(settings: Settings, rows: list[tuple[datetime, str, str, str, int]]) -> None:
    with transaction(settings) as conn:
        conn.execute(
            sa.insert(job_stats_minutes),
            [
                {"minute": m, "type": t, "outcome": o, "job_status": s, "attempts": n}
                for m, t, o, s, n in rows
            ],
        )


def _minutes_folded_until(settings: Settings, moment: datetime) -> None:
    """The state of a farm whose minute rollup has reached ``moment`` (and no hour yet)."""
    with transaction(settings) as conn:
        conn.execute(
            sa.update(job_stats_rollup).values(
                rolled_until=moment, hours_rolled_until=T0 - timedelta(hours=1)
            )
        )


def _hours(settings: Settings) -> dict[tuple[datetime, str, str, str], int]:
    with transaction(settings) as conn:
        rows = conn.execute(sa.select(job_stats_hours)).all()
    return {(r.hour, r.type, r.outcome, r.job_status): r.attempts for r in rows}


def test_minute_rows_of_whole_hours_are_summed_into_hours_once(settings: Settings) -> None:
    at = T0.replace
    _minutes(
        settings,
        [
            (at(minute=0), "email", "succeeded", "succeeded", 40),
            (at(minute=1), "email", "succeeded", "succeeded", 2),
            (at(minute=59), "email", "succeeded", "succeeded", 3),
            (at(minute=7), "email", "failed", "retrying", 5),
            (at(minute=8), "email", "failed", "dead", 1),
            (at(minute=30), "embed", "succeeded", "succeeded", 7),
            (at(hour=11, minute=0), "email", "succeeded", "succeeded", 10),
            (at(hour=11, minute=45), "email", "timed_out", "retrying", 4),
            # The hour still going on: not summed yet.
            (at(hour=12, minute=0), "email", "succeeded", "succeeded", 100),
            (at(hour=12, minute=2), "email", "succeeded", "succeeded", 1),
        ],
    )
    _minutes_folded_until(settings, at(hour=12, minute=3))
    with transaction(settings) as conn:
        assert roll_hours(conn, at(hour=12, minute=5)) == 2
    hours = _hours(settings)
    assert hours == {
        (T0, "email", "succeeded", "succeeded"): 45,
        (T0, "email", "failed", "retrying"): 5,
        (T0, "email", "failed", "dead"): 1,
        (T0, "embed", "succeeded", "succeeded"): 7,
        (at(hour=11), "email", "succeeded", "succeeded"): 10,
        (at(hour=11), "email", "timed_out", "retrying"): 4,
    }
    with transaction(settings) as conn:
        assert roll_hours(conn, at(hour=12, minute=6)) == 0  # nothing twice
        until = conn.execute(sa.select(job_stats_rollup.c.hours_rolled_until)).scalar_one()
    assert until == at(hour=12)
    assert _hours(settings) == hours

    # An hour is summed only once its minutes are all folded, whatever the clock says.
    _minutes(settings, [(at(hour=12, minute=59), "email", "succeeded", "succeeded", 9)])
    with transaction(settings) as conn:
        assert roll_hours(conn, at(hour=14)) == 0
    _minutes_folded_until(settings, at(hour=13, minute=1))
    with transaction(settings) as conn:
        conn.execute(sa.update(job_stats_rollup).values(hours_rolled_until=at(hour=12)))
        assert roll_hours(conn, at(hour=13, minute=2)) == 1
    assert _hours(settings)[(at(hour=12), "email", "succeeded", "succeeded")] == 110

    # The series: hours from the hourly rows, the current hour from its minute rows.
    _minutes(settings, [(at(hour=13, minute=0), "email", "failed", "dead", 2)])
    with snapshot(settings) as conn:
        hourly = job_stats.per_hour(conn, at(hour=13, minute=2), hours=5)
        daily = job_stats.per_day(conn, at(hour=13, minute=2), days=2)
    assert [(p.minute, p.succeeded, p.failed, p.dead) for p in hourly] == [
        (at(hour=9), 0, 0, 0),
        (T0, 52, 6, 1),
        (at(hour=11), 10, 4, 0),
        (at(hour=12), 110, 0, 0),
        (at(hour=13), 0, 2, 2),
    ]
    assert [(p.minute, p.succeeded, p.failed, p.dead) for p in daily] == [
        (at(day=22, hour=0), 0, 0, 0),
        (at(hour=0), 172, 12, 3),
    ]


def test_the_minute_rollup_carries_attempts_into_hours(settings: Settings) -> None:
    """Attempts -> minute rows -> hour rows, by the rollup the readers and the scheduler run."""
    for minute in (5, 6, 50):
        _attempt(settings, "email", 0.2, "succeeded", "succeeded", T0 + timedelta(minutes=minute, seconds=3))
    _attempt(settings, "email", 0.2, "failed", "dead", T0 + timedelta(hours=1, minutes=10))
    with transaction(settings) as conn:
        assert job_stats.roll_up(conn, T0 + timedelta(hours=1, minutes=30)) is True
    assert _hours(settings) == {(T0, "email", "succeeded", "succeeded"): 3}
    with snapshot(settings) as conn:
        points = job_stats.per_hour(conn, T0 + timedelta(hours=1, minutes=30), hours=2)
    assert [(p.succeeded, p.failed, p.dead) for p in points] == [(3, 0, 0), (0, 1, 1)]


def test_hours_past_their_retention_are_pruned(settings: Settings) -> None:
    now = utcnow()
    old = (now - timedelta(days=31)).replace(minute=0, second=0, microsecond=0)
    kept = (now - timedelta(days=29)).replace(minute=0, second=0, microsecond=0)
    with transaction(settings) as conn:
        conn.execute(
            sa.insert(job_stats_hours),
            [
                {
                    "hour": old,
                    "type": "email",
                    "outcome": "succeeded",
                    "job_status": "succeeded",
                    "attempts": 1,
                },
                {
                    "hour": kept,
                    "type": "email",
                    "outcome": "succeeded",
                    "job_status": "succeeded",
                    "attempts": 2,
                },
            ],
        )
    prune(settings)
    assert set(_hours(settings)) == {(kept, "email", "succeeded", "succeeded")}
