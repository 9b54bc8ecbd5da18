"""Job ids are time-ordered UUIDs (version 7): a later job's id sorts after an earlier one's, in
Postgres's uuid order (its bytes) as in Python's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from core.engine.jobs import time_ordered_ids

#: What Jobyard ever stamps: from 1970 to the end of the 48-bit millisecond clock (year 10889).
TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))


def test_ids_are_version_7_of_the_rfcs_variant_and_unique() -> None:
    at = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    ids = time_ordered_ids(10_000, at)
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == len(ids)
    # The first 48 bits are the time in Unix milliseconds: what the id tells of its job.
    assert {int.from_bytes(i.bytes[:6], "big") for i in ids} == {int(at.timestamp() * 1000)}


@given(TIMES, st.integers(min_value=1, max_value=10**9))
def test_a_later_millisecond_sorts_after_an_earlier_one(at: datetime, later_ms: int) -> None:
    later = at + timedelta(milliseconds=later_ms)
    assume(later.year <= 9999)
    (first,), (second,) = time_ordered_ids(1, at), time_ordered_ids(1, later)
    assert first < second and first.bytes < second.bytes
