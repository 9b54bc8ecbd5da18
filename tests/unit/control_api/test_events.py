"""The pieces of live events that need no farm: what a request may ask for, how a message is written,
and a subscriber that does not keep up."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

from control_api.events import KEEP_ALIVE, frame, parse_types, ready_cursor, resume_cursor
from control_api.fanout import QUEUE_SIZE, Subscriber
from control_api.jobs import checked_wait
from core.errors import BadRequest, InvalidInput
from core.events.log import LAST, Event
from core.platform.tables.events import EVENT_TYPES


def _event(n: int, tenant: str = "shop-a", type: str = "job.succeeded") -> Event:
    return Event(n, 100 + n, tenant, type, f"job-{n}", "test_sleep", {}, datetime(2026, 1, 1, tzinfo=UTC))


def test_types_are_checked_and_absent_means_all() -> None:
    # All but the stream-only job.progress, which a stream gets only by naming it.
    every = frozenset(EVENT_TYPES)
    assert parse_types(None) == parse_types("") == parse_types(" , ") == every
    assert parse_types("job.succeeded, job.dead") == {"job.succeeded", "job.dead"}
    with pytest.raises(InvalidInput) as caught:
        parse_types("job.succeeded,job.exploded")
    assert "job.exploded" in str(caught.value.details)


def test_a_resume_cursor_comes_from_the_header_first_and_must_be_one() -> None:
    assert resume_cursor(None, None) is None
    assert resume_cursor("12-34", "1-1") == (12, 34)
    assert resume_cursor(None, "12-34") == (12, 34)
    for bad in ("abc", "1-", "-1", "1-2-3", "1" * 25 + "-1"):
        with pytest.raises(BadRequest):
            resume_cursor(bad, None)


def test_a_ready_cursor_is_after_every_event_of_its_transactions_and_says_when() -> None:
    xid, marker = ready_cursor(41)
    assert xid == 41 and marker > 2**62 and abs((LAST - marker) - datetime.now(UTC).timestamp()) < 5


def test_a_message_is_one_event_and_a_keep_alive_is_none() -> None:
    assert frame("job.succeeded", {"a": 1}, "7-9") == b'id: 7-9\nevent: job.succeeded\ndata: {"a":1}\n\n'
    assert frame("reset", {}) == b"event: reset\ndata: {}\n\n"
    assert KEEP_ALIVE.startswith(b":") and not KEEP_ALIVE.endswith(b"\n\n")


def test_a_wait_is_a_number_of_seconds_within_the_most() -> None:
    assert checked_wait(None, 60) == 0 and checked_wait("30", 60) == 30 and checked_wait("0.5", 60) == 0.5
    for bad in ("-1", "61", "nan", "inf", "soon", ""):
        with pytest.raises(BadRequest):
            checked_wait(bad, 60)
    assert not math.isnan(checked_wait("60", 60))


def test_a_subscriber_gets_its_own_tenants_events_of_its_types_and_is_closed_when_full() -> None:
    async def scenario() -> None:
        sub = Subscriber("shop-a", frozenset({"job.succeeded"}))
        assert sub.wants(_event(1)) and not sub.wants(_event(2, tenant="shop-b"))
        assert not sub.wants(_event(3, type="job.dead"))
        waiter = Subscriber("shop-a", None, subject="job-4")
        assert waiter.wants(_event(4, type="job.dead")) and not waiter.wants(_event(5))

        for n in range(QUEUE_SIZE + 5):
            sub.offer(_event(n))
        assert sub.closed and sub.queue.qsize() == QUEUE_SIZE
        got = [sub.queue.get_nowait() for _ in range(QUEUE_SIZE)]
        assert got[-1] is None and all(e is not None for e in got[:-1])  # the end mark comes last

    asyncio.run(scenario())
