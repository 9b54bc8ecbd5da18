"""Small pieces of core that need no services: errors, backoff, cursors, the import arrows."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.chats.unread import UnreadCountPayload
from core.engine.job_types import JobType
from core.engine.retry import error_record, next_retry_at
from core.errors import BadCursor, PermanentError, RateLimitedError, RetryableError, UnknownOutcomeError
from core.platform.pagination import decode_cursor, encode_cursor

ROOT = Path(__file__).resolve().parents[2]


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


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_imports_neither_workers_nor_control_api() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & {"workers", "control_api"})
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_workers_and_api_do_not_import_each_other() -> None:
    for package, other in (("workers", "control_api"), ("control_api", "workers")):
        for path in (ROOT / package).rglob("*.py"):
            assert other not in _imports(path), path
