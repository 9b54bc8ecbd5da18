"""Quiet hours (core/messaging/quiet_hours.py): windows, parsing, and when a message may go in the
recipient's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.messaging.quiet_hours import QuietHours, next_allowed, parse_quiet_hours
from core.platform.settings import SettingsError

KOLKATA = ZoneInfo("Asia/Kolkata")

NIGHT = QuietHours(time(21), time(9))


def _at(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def test_a_window_across_midnight_holds_the_evening_and_the_early_morning() -> None:
    assert [
        NIGHT.contains(time(h, m)) for h, m in [(20, 59), (21, 0), (23, 59), (0, 0), (8, 59), (9, 0)]
    ] == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]


def test_a_same_day_window_and_an_empty_one() -> None:
    lunch = QuietHours(time(12), time(14))
    assert [lunch.contains(time(h)) for h in (11, 12, 13, 14)] == [False, True, True, False]
    assert not QuietHours(time(9), time(9)).contains(time(9))


def test_quiet_hours_are_parsed_or_switched_off() -> None:
    assert parse_quiet_hours("21:00-09:00") == NIGHT
    assert parse_quiet_hours(" 7:30 - 8:05 ") == QuietHours(time(7, 30), time(8, 5))
    assert parse_quiet_hours("off") is None
    for bad in ("21-09", "25:00-09:00", "21:00", "evening"):
        with pytest.raises(SettingsError, match="JOBYARD_QUIET_HOURS"):
            parse_quiet_hours(bad)


def test_late_evening_waits_for_the_next_morning_in_the_recipients_zone() -> None:
    # 23:00 in Kolkata (17:30 UTC) -> 09:00 the next day in Kolkata (03:30 UTC).
    until = next_allowed(_at(KOLKATA, 2026, 3, 10, 23, 0), KOLKATA, NIGHT)
    assert until == _at(KOLKATA, 2026, 3, 11, 9, 0)
    assert until.utcoffset() == timedelta(0)


def test_early_morning_waits_until_nine_the_same_day() -> None:
    assert next_allowed(_at(KOLKATA, 2026, 3, 11, 8, 59, 58), KOLKATA, NIGHT) == _at(
        KOLKATA, 2026, 3, 11, 9, 0
    )


def test_outside_quiet_hours_or_with_them_off_a_message_goes_now() -> None:
    for hour in (9, 12, 20):
        assert next_allowed(_at(KOLKATA, 2026, 3, 11, hour, 0), KOLKATA, NIGHT) is None
    assert next_allowed(_at(KOLKATA, 2026, 3, 11, 23, 0), KOLKATA, None) is None


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    instant = datetime(2026, 3, 11, 22, 0, tzinfo=UTC)  # 22:00 London, 03:30 Kolkata, 18:00 New York
    assert next_allowed(instant, ZoneInfo("Europe/London"), NIGHT) is not None
    assert next_allowed(instant, KOLKATA, NIGHT) == _at(KOLKATA, 2026, 3, 12, 9, 0)
    assert next_allowed(instant, ZoneInfo("America/New_York"), NIGHT) is None


def test_the_morning_after_a_dst_change_is_nine_local_time() -> None:
    london = ZoneInfo("Europe/London")  # clocks go forward on 2026-03-29 at 01:00 UTC
    until = next_allowed(_at(london, 2026, 3, 28, 22, 0), london, NIGHT)
    assert until == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 09:00 BST
