"""Next-slot arithmetic of recurring schedules: intervals, cron in a timezone, catching up once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.schedules import check_rule, next_slot

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_an_interval_keeps_its_rhythm_from_the_start_time() -> None:
    assert next_slot(60, None, "UTC", START, START) == START + timedelta(seconds=60)
    assert next_slot(60, None, "UTC", START, START + timedelta(seconds=61)) == START + timedelta(seconds=120)


def test_after_downtime_the_next_slot_is_after_now_not_the_first_missed_one() -> None:
    # Down for ten minutes of a 2-second schedule: one firing, then the next slot after now.
    now = START + timedelta(minutes=10, seconds=1)
    assert next_slot(2, None, "UTC", START, now) == START + timedelta(minutes=10, seconds=2)


def test_a_future_start_is_the_first_slot() -> None:
    later = START + timedelta(days=1)
    assert next_slot(3600, None, "UTC", later, START) == later
    assert next_slot(None, "0 10 * * *", "UTC", later, START) == later


def test_cron_runs_in_the_schedules_timezone_across_dst() -> None:
    london = ZoneInfo("Europe/London")
    before_dst = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)  # clocks go forward on 29 March
    first = next_slot(None, "0 10 * * *", "Europe/London", before_dst - timedelta(days=1), before_dst)
    second = next_slot(None, "0 10 * * *", "Europe/London", before_dst, first)
    assert first.astimezone(london).hour == 10 and first.utcoffset() == timedelta(0)
    assert second.astimezone(london).hour == 10
    assert second - first == timedelta(hours=23)  # the local day is an hour short


def test_rules_are_checked() -> None:
    assert check_rule(60, None, "UTC") == []
    assert [e.field for e in check_rule(None, None, "UTC")] == ["every_seconds"]
    assert [e.field for e in check_rule(None, "not cron", "UTC")] == ["cron"]
    assert [e.field for e in check_rule(5, None, "Nowhere/City")] == ["timezone"]
