"""Next-slot arithmetic of recurring schedules: intervals, cron in a timezone (one firing per local
slot across DST changes), catching up once, and rules that are refused (never firing, bogus zones)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.engine.schedule_rules import check_rule, next_slot
from core.engine.timebounds import HORIZON
from core.errors import NoNextSlot

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")


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
    before_dst = datetime(2026, 3, 28, 8, 0, tzinfo=UTC)  # clocks go forward on 29 March
    first = next_slot(None, "0 10 * * *", "Europe/London", before_dst - timedelta(days=1), before_dst)
    second = next_slot(None, "0 10 * * *", "Europe/London", before_dst, first)
    assert first.astimezone(LONDON).hour == 10 and first.utcoffset() == timedelta(0)
    assert second.astimezone(LONDON).hour == 10
    assert second - first == timedelta(hours=23)  # the local day is an hour short


def _firings(cron: str, zone: str, since: datetime, count: int) -> list[datetime]:
    slots, now = [], since
    for _ in range(count):
        now = next_slot(None, cron, zone, since - timedelta(days=400), now)
        slots.append(now)
    return slots


def test_a_daily_slot_in_the_hour_that_repeats_fires_once() -> None:
    # London goes back from 02:00 BST to 01:00 GMT on 25 October 2026: 01:30 happens twice.
    fired = _firings("30 1 * * *", "Europe/London", datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 3)
    assert [f.astimezone(LONDON).strftime("%d %H:%M %Z") for f in fired] == [
        "25 01:30 BST",  # the first 01:30 only
        "26 01:30 GMT",
        "27 01:30 GMT",
    ]


def test_a_daily_slot_in_the_hour_that_is_skipped_fires_at_the_jump() -> None:
    # London jumps from 01:00 GMT to 02:00 BST on 29 March 2026: 01:30 does not happen that day.
    fired = _firings("30 1 * * *", "Europe/London", datetime(2026, 3, 28, 12, 0, tzinfo=UTC), 3)
    assert [f.astimezone(LONDON).strftime("%d %H:%M %Z") for f in fired] == [
        "29 02:00 BST",  # the moment the clock jumps over 01:30
        "30 01:30 BST",
        "31 01:30 BST",
    ]
    assert fired[0] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_slots_of_a_skipped_hour_fire_once_together_and_a_repeated_hour_once() -> None:
    spring = _firings("*/20 * * * *", "Europe/London", datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 4)
    assert [f.astimezone(LONDON).strftime("%H:%M") for f in spring] == ["00:40", "02:00", "02:20", "02:40"]
    autumn = _firings("*/20 * * * *", "Europe/London", datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 5)
    # 01:00, 01:20 and 01:40 fire in the first pass (BST) only; then 02:00 GMT, an hour and 20 later.
    assert [f.astimezone(LONDON).strftime("%H:%M %Z") for f in autumn] == [
        "01:00 BST",
        "01:20 BST",
        "01:40 BST",
        "02:00 GMT",
        "02:20 GMT",
    ]


def test_rules_are_checked() -> None:
    assert check_rule(60, None, "UTC") == []
    assert [e.field for e in check_rule(None, None, "UTC")] == ["every_seconds"]
    assert [e.field for e in check_rule(None, "not cron", "UTC")] == ["cron"]
    assert [e.field for e in check_rule(5, None, "Nowhere/City")] == ["timezone"]


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_rule_that_never_fires_is_refused(cron: str) -> None:
    assert [e.field for e in check_rule(None, cron, "UTC", now=START)] == ["cron"]
    assert "never fires" in check_rule(None, cron, "UTC", now=START)[0].message
    with pytest.raises(NoNextSlot):
        next_slot(None, cron, "UTC", START, START)


@pytest.mark.parametrize("zone", ["America", "../etc", "", "x" * 300, "Europe/", "tzdata.zi", "UTC\x00"])
def test_a_zone_that_is_not_one_is_refused(zone: str) -> None:
    assert [e.field for e in check_rule(None, "0 8 * * *", zone)] == ["timezone"]
    with pytest.raises(ValueError, match="time zone"):
        next_slot(None, "0 8 * * *", zone, START, START)


# -- properties --------------------------------------------------------------------------------

#: Zones with DST changes of every kind: an hour at 01:00 UTC, at local midnight (Havana), half an
#: hour (Lord Howe), in the southern hemisphere, and the day Samoa skipped (30 December 2011).
DST_ZONES = [
    "Europe/London",
    "America/New_York",
    "America/Havana",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Europe/Chisinau",
    "Pacific/Apia",
    "Asia/Tehran",
    "UTC",
]

minutes = st.sampled_from(["*", "0", "30", "59", "*/15", "*/7", "5,35", "10-20"])
hours = st.sampled_from(["*", "0", "1", "2", "3", "12", "23", "*/5", "1-3"])
days = st.sampled_from(["*", "1", "15", "28", "29", "L"])
months = st.sampled_from(["*", "2", "3", "10", "11", "*/2", "3,10"])
weekdays = st.sampled_from(["*", "0", "1-5", "6"])
crons = st.builds(lambda *f: " ".join(f), minutes, hours, days, months, weekdays)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@given(
    cron=crons,
    zone=st.sampled_from(DST_ZONES),
    now=instants,
    later=st.timedeltas(timedelta(0), timedelta(days=40)),
)
@settings(max_examples=300, deadline=None)
def test_next_slot_is_after_now_and_moves_forward_with_now(
    cron: str, zone: str, now: datetime, later: timedelta
) -> None:
    first = next_slot(None, cron, zone, now - timedelta(days=1), now)
    assert first > now
    assert next_slot(None, cron, zone, now - timedelta(days=1), now + later) >= first
    # Nothing between now and the slot is a slot.
    assert next_slot(None, cron, zone, now - timedelta(days=1), first - timedelta(microseconds=1)) == first


@given(
    zone=st.sampled_from(DST_ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 30, 45, 59]),
    year=st.integers(2000, 2035),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(zone="Europe/London", hour=1, minute=30, year=2026)
@example(zone="America/Havana", hour=0, minute=0, year=2026)
@example(zone="Pacific/Apia", hour=12, minute=0, year=2011)
def test_a_daily_cron_fires_once_per_local_day_through_a_whole_year(
    zone: str, hour: int, minute: int, year: int
) -> None:
    tz = ZoneInfo(zone)
    since = datetime(year, 1, 1, tzinfo=tz).astimezone(UTC)
    served = [
        _served_day(f.astimezone(tz), hour, minute)
        for f in _firings(f"{minute} {hour} * * *", zone, since, 366)
    ]
    # One firing for every local day in a row: none twice, none left out.
    assert all((b - a).days == 1 for a, b in itertools.pairwise(served)), (zone, year, served)


def _served_day(wall: datetime, hour: int, minute: int) -> date:
    """The local day whose slot a firing at local time ``wall`` is."""
    if (wall.hour, wall.minute) == (hour, minute):
        return wall.date()
    # Not at the slot's wall time: only when the clock jumped over it (that day or, for a skipped
    # day such as Samoa's 30 December 2011, the day before), and then the firing is at the jump.
    for day in (wall.date(), wall.date() - timedelta(days=1)):
        meant = datetime.combine(day, time(hour, minute))
        missing = (
            meant.replace(tzinfo=wall.tzinfo).astimezone(UTC).astimezone(wall.tzinfo).replace(tzinfo=None)
            != meant
        )
        if missing and meant < wall.replace(tzinfo=None):
            return day
    raise AssertionError(f"a firing at {wall} serves no slot {hour:02}:{minute:02}")


@given(cron=crons, zone=st.sampled_from(DST_ZONES), since=instants)
@settings(max_examples=100, deadline=None)
def test_no_local_slot_fires_twice(cron: str, zone: str, since: datetime) -> None:
    tz = ZoneInfo(zone)
    fired = _firings(cron, zone, since, 50)
    walls = [f.astimezone(tz).replace(tzinfo=None) for f in fired]
    assert all(a < b for a, b in itertools.pairwise(fired))
    assert all(a < b for a, b in itertools.pairwise(walls)), walls  # the wall clock never repeats a slot


@given(st.text(max_size=120))
@example("0 0 31 2 *")
@example("* * * * * * *")
@example("@reboot")
@example("0 0 1 1 * 0 2099")
@example("L L L L L")
@settings(max_examples=300, deadline=None)
def test_any_cron_text_is_refused_or_fires_within_the_horizon(cron: str) -> None:
    errors = check_rule(None, cron, "Europe/London", now=START)
    if errors:
        assert {e.field for e in errors} == {"cron"}
        return
    assert START < next_slot(None, cron, "Europe/London", START, START) <= START + HORIZON
