"""Job types that exist only in the tests, loaded through JOBYARD_JOB_MODULES like a deployment's own."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from core.errors import PermanentError, RetryableError
from core.jobs import JobType, register_job_type
from workers.handlers import JobContext, handler


class FlakyPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Attempts that fail before one succeeds.
    fail_times: int = 0
    error: Literal["retryable", "permanent", "unexpected"] = "retryable"


register_job_type(
    JobType(name="test_flaky", payload=FlakyPayload, max_retries=2, min_backoff_s=0.1, max_backoff_s=0.3)
)


@handler("test_flaky")
def flaky(ctx: JobContext, payload: FlakyPayload) -> dict[str, Any]:
    if ctx.claim.attempt <= payload.fail_times:
        if payload.error == "permanent":
            raise PermanentError("the test asked for a permanent failure", code="test_permanent")
        if payload.error == "unexpected":
            raise ZeroDivisionError("the test asked for an unexpected error")
        raise RetryableError(f"failing attempt {ctx.claim.attempt}", code="test_retryable")
    return {"attempt": ctx.claim.attempt}
