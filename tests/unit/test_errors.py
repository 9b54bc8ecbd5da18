"""The error tree of core/errors/: what a stored error record carries and which errors are retried."""

from __future__ import annotations

from core.engine.retry import error_record
from core.errors import PermanentError, RateLimitedError, RetryableError, UnknownOutcomeError


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
