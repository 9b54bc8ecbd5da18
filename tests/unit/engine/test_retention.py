"""How long each finished job is kept (core/engine/retention.py), without services: a type's own
``retain`` first, then the settings, which also keep the jobs of a type no longer deployed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.engine.declare import JobContext, job_type
from core.engine.finished import DAY
from core.engine.retention import (
    MAX_REST_S,
    Pace,
    drop_line,
    history_due_before,
    oldest_per_type,
    retention_s,
    run_batches,
)
from core.platform.settings import Settings
from tests.properties import PROPERTY


class Empty(msgspec.Struct):
    pass


@job_type("test_unit_kept_an_hour", payload=Empty, retain={"succeeded": 3600})
def _kept(ctx: JobContext, payload: Empty) -> None:
    return None


SETTINGS = Settings(retain_succeeded_s=10.0, retain_cancelled_s=20.0, retain_dead_s=0.0)


@pytest.mark.parametrize(
    ("type_name", "status", "seconds"),
    [
        ("test_unit_kept_an_hour", "succeeded", 3600.0),
        ("test_unit_kept_an_hour", "cancelled", 20.0),
        ("test_unit_kept_an_hour", "dead", 0.0),  # forever, as the settings say
        ("a_type_no_longer_deployed", "succeeded", 10.0),
        ("a_type_no_longer_deployed", "dead", 0.0),
    ],
)
def test_a_types_own_retention_comes_first_then_the_settings(
    type_name: str, status: str, seconds: float
) -> None:
    assert retention_s(type_name, status, SETTINGS) == seconds


def test_only_final_statuses_have_a_retention() -> None:
    with pytest.raises(ValueError, match="not a final status"):
        oldest_per_type(None, "queued")  # type: ignore[arg-type]


def _removed(finished_at: datetime, now: datetime, kept_s: float, longest_s: float) -> bool:
    """Whether a pass at ``now`` removes a history row, as prune decides: its whole day dropped, or a
    batch delete past its own due time in a day that is not dropped."""
    line = drop_line(now, longest_s)
    due = history_due_before(now, kept_s)
    return finished_at < line or (due is not None and line <= finished_at < due)


SECONDS = st.floats(min_value=1.0, max_value=400 * 86400.0)
TIMES = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@PROPERTY
@given(
    finished_at=TIMES, kept_s=SECONDS, more_s=st.floats(min_value=0.0, max_value=400 * 86400.0), after=SECONDS
)
def test_a_history_row_goes_never_before_its_retention_and_at_most_a_day_after(
    finished_at: datetime, kept_s: float, more_s: float, after: float
) -> None:
    """Whatever its own retention, the longest its day holds, and when the pass runs: never early, and
    once its retention and a day (or as much again, if less) have passed, gone."""
    longest_s = kept_s + more_s
    now = finished_at + timedelta(seconds=after)
    if _removed(finished_at, now, kept_s, longest_s):
        assert now - finished_at >= timedelta(seconds=kept_s)
    if now - finished_at > timedelta(seconds=kept_s) + min(timedelta(seconds=kept_s), DAY):
        assert _removed(finished_at, now, kept_s, longest_s)


class Clock:
    """A clock each batch moves on by its own duration, and a sleep that moves it by what it slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _batches(clock: Clock, sizes: list[int], took_s: float) -> Iterator[Callable[[], int]]:
    def run(size: int) -> int:
        clock.now += took_s
        return size

    def each() -> Callable[[], int]:
        left = list(sizes)
        return lambda: run(left.pop(0))

    yield each()


@pytest.mark.parametrize(("rest", "took_s", "slept"), [(1.0, 0.2, 0.2), (0.5, 0.2, 0.1), (1.0, 3.0, 1.0)])
def test_pruning_rests_after_each_full_batch_as_long_as_it_took(
    rest: float, took_s: float, slept: float
) -> None:
    clock = Clock()
    pace = Pace(batch=500, rest=rest, clock=lambda: clock.now, sleep=clock.sleep)
    removed = run_batches(_batches(clock, [500, 500, 120], took_s), pace, lambda: False)
    assert removed == 1120
    # A rest after each of the two full batches, none after the short last one (nothing is left);
    # never more than MAX_REST_S.
    assert clock.slept == pytest.approx([min(slept, MAX_REST_S)] * 2)


def test_pruning_flat_out_does_not_rest() -> None:
    clock = Clock()
    pace = Pace(batch=500, rest=0.0, clock=lambda: clock.now, sleep=clock.sleep)
    assert run_batches(_batches(clock, [500, 500, 0], 0.2), pace, lambda: False) == 1000
    assert clock.slept == []
