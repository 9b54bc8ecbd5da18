"""Small pieces of core that need no services: errors, backoff, cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.chats.unread import UnreadCountPayload
from core.engine.job_types import JobType
from core.engine.retry import next_retry_at
from core.errors import PermanentError, RateLimitedError, RetryableError, UnknownOutcomeError, error_record
from core.platform.pagination import BadCursor, decode_cursor, encode_cursor


def test_error_records_carry_code_message_and_traceback() -> None:
    try:
        raise PermanentError("recipient opted out", code="opted_out")
    except PermanentError as exc:
        record = error_record(exc)
    assert record["code"] == "opted_out"
    assert record["message"] == "recipient opted out"
    assert record["retryable"] is False
    assert "test_error_records_carry_code_message_and_traceback" in record["traceback"]


def test_the_error_tree_decides_retryability() -> None:
    assert error_record(RetryableError())["retryable"] is True
    assert error_record(RateLimitedError(retry_after=3))["code"] == "rate_limited"
    assert error_record(UnknownOutcomeError())["retryable"] is False
    surprise = error_record(KeyError("x"))
    assert (surprise["code"], surprise["retryable"]) == ("unexpected_error", True)
    # The docstring is the default message.
    assert PermanentError().message.startswith("Retrying cannot help")


def test_backoff_grows_and_stays_within_bounds() -> None:
    jt = JobType(name="t", payload=UnreadCountPayload, min_backoff_s=1, max_backoff_s=10)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for attempt in range(1, 12):
        delays = [(next_retry_at(jt, attempt, now) - now).total_seconds() for _ in range(50)]
        assert all(1 <= d <= 10 for d in delays)
    late = [(next_retry_at(jt, 10, now) - now).total_seconds() for _ in range(200)]
    assert max(late) > 5  # later attempts do wait longer


def test_cursor_round_trip_and_garbage() -> None:
    stamp, ident = datetime(2026, 11, 22, 10, 0, tzinfo=UTC) + timedelta(microseconds=5), uuid.uuid4()
    assert decode_cursor(encode_cursor(stamp, ident)) == (stamp, ident)
    for bad in ("", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(stamp, ident)[:-4]):
        with pytest.raises(BadCursor):
            decode_cursor(bad)
