"""Property tests of the bounds of client times and of time zone names (core/engine/timebounds.py): any
time or name a client can send is either accepted as a UTC time within the horizon, or refused with
a field error; nothing raises."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from hypothesis import example, given
from hypothesis import strategies as st

from core.engine.timebounds import HORIZON, HORIZON_S, MAX_ZONE_NAME, bounded_utc, zone_named

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

#: Every offset a client can write (msgspec accepts up to ±23:59) and every IANA zone.
offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59))
zones = st.one_of(
    st.builds(timezone, offsets.map(lambda d: timedelta(minutes=d // timedelta(minutes=1)))),
    st.timezones(),
)
any_time = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=zones
)


@given(any_time)
@example(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14))))
@example(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))
@example(datetime(1970, 1, 1, tzinfo=UTC))
@example(datetime(2020, 10, 4, 0, 1, tzinfo=zoneinfo.ZoneInfo("Antarctica/Casey")))  # in a zone change
def test_a_client_time_is_a_utc_time_within_the_horizon_or_a_field_error(value: datetime) -> None:
    utc, error = bounded_utc(value, "run_at", NOW)
    if error is not None:
        assert utc is None
        assert error.field == "run_at" and error.message
        return
    assert utc is not None
    # The same instant, in UTC: local time less its offset. (Not `utc == value`: Python never finds a
    # time in a DST gap or fold equal to a time in another zone, PEP 495.)
    offset = value.utcoffset()
    assert offset is not None
    assert utc.tzinfo is UTC and utc.replace(tzinfo=None) == value.replace(tzinfo=None) - offset
    assert NOW - HORIZON <= utc <= NOW + HORIZON


@given(st.integers(min_value=-2 * HORIZON_S, max_value=2 * HORIZON_S), zones)
def test_the_horizon_is_ten_years_either_way_whatever_the_offset(seconds: int, zone: tzinfo) -> None:
    instant = NOW + timedelta(seconds=seconds)
    utc, error = bounded_utc(instant.astimezone(zone), "start_at", NOW)
    inside = abs(seconds) <= HORIZON_S
    assert (error is None) == inside, (seconds, error)
    if inside:
        assert utc == instant


def test_the_reported_cases() -> None:
    for text in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z"):
        _, error = bounded_utc(datetime.fromisoformat(text), "run_at", NOW)
        assert error is not None and error.field == "run_at", text
    past, error = bounded_utc(NOW - timedelta(days=1), "run_at", NOW)
    assert error is None and past == NOW - timedelta(days=1)  # a past time is kept; it means now
    assert bounded_utc(NOW.replace(tzinfo=None), "run_at", NOW)[1] is not None  # no zone: refused


NAMES = sorted(zoneinfo.available_timezones())


@given(
    st.one_of(
        st.text(max_size=80),
        st.sampled_from(NAMES),
        st.sampled_from(["America", "Europe/", "../etc", "/etc/localtime", "tzdata.zi", "UTC\x00", ""]),
        st.sampled_from(NAMES).map(lambda n: n + "/x"),
        st.sampled_from(NAMES).map(str.lower),
    )
)
def test_a_time_zone_name_is_an_iana_zone_or_a_value_error(name: str) -> None:
    try:
        zone = zone_named(name)
    except ValueError as exc:
        assert name not in NAMES or len(name) > MAX_ZONE_NAME
        assert "time zone" in str(exc)
        return
    assert name in NAMES and zone.key == name
