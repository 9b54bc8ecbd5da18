"""What happens after a failed attempt, decided from the error tree and the job's budget in Postgres.

Retries wait in Postgres (status `retrying`, run_at = the next attempt's time) and the scheduler
publishes them when due. Dramatiq's own Retries middleware is not used: it counts retries in the
message, so it cannot see attempts lost with a dead worker, rate-limited waits that must not spend
the budget, or a redrive's fresh budget; and it parks every delayed retry in Redis, which this
design keeps for work that is due now.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded

from core.engine.job_types import JobType
from core.engine.jobs import JobStatus
from core.errors import JobFailure, Postponed, RateLimitedError
from core.platform.crypto import mask_phones_in

#: Longest wait a Retry-After may ask for; longer requests are honoured up to this and counted.
MAX_RETRY_AFTER_S = 86400.0


@dataclass(frozen=True, slots=True)
class Decision:
    status: JobStatus  # RETRYING or DEAD
    run_at: datetime | None  # when the next attempt may start
    #: Whether this attempt is free: it does not count against max_retries (raises retry_base).
    free: bool
    outcome: str  # the attempt's outcome as stored


def next_retry_at(job_type: JobType, attempt: int, now: datetime) -> datetime:
    """Exponential backoff from the type's minimum, doubling per attempt up to its maximum, with full
    jitter above the minimum so that a burst of failures does not retry in lockstep."""
    ceiling = min(job_type.max_backoff_s, job_type.min_backoff_s * 2 ** max(attempt - 1, 0))
    delay = job_type.min_backoff_s + random.uniform(0, max(ceiling - job_type.min_backoff_s, 0))  # noqa: S311
    return now + timedelta(seconds=delay)


def decide(
    job_type: JobType,
    *,
    attempt: int,
    retry_base: int,
    max_retries: int,
    error: dict[str, Any],
    rate_limit_waits: int,
    now: datetime,
) -> Decision:
    """Retry or dead-letter a failed attempt.

    ``rate_limit_waits`` is how many earlier attempts of this job were rate limited.
    """
    if "postponed_until" in error:
        # Not a failure (quiet hours): wait until then, free. Never earlier than the type's minimum
        # backoff, so a postponement to a time already past cannot spin.
        until = max(
            datetime.fromisoformat(error["postponed_until"]), now + timedelta(seconds=job_type.min_backoff_s)
        )
        return Decision(JobStatus.RETRYING, until, free=True, outcome="postponed")
    if not error.get("retryable", True):
        return Decision(JobStatus.DEAD, None, free=False, outcome="failed")
    if "retry_after" in error:
        if rate_limit_waits >= job_type.max_rate_limit_waits:
            return Decision(JobStatus.DEAD, None, free=False, outcome="rate_limited")
        wait = min(max(float(error["retry_after"]), job_type.min_backoff_s), MAX_RETRY_AFTER_S)
        return Decision(JobStatus.RETRYING, now + timedelta(seconds=wait), free=True, outcome="rate_limited")
    if attempt - retry_base <= max_retries:
        return Decision(
            JobStatus.RETRYING, next_retry_at(job_type, attempt - retry_base, now), False, "failed"
        )
    return Decision(JobStatus.DEAD, None, free=False, outcome="failed")


#: Frames of traceback kept on a stored error: enough to find the line, small enough for a row.
TRACEBACK_FRAMES = 8


def error_record(exc: BaseException) -> dict[str, Any]:
    """The JSON stored on a job and an attempt for an exception."""
    extra: dict[str, Any] = {}
    if isinstance(exc, JobFailure):
        code, retryable, message = exc.code, exc.retryable, exc.message
        if isinstance(exc, RateLimitedError):
            extra["retry_after"] = exc.retry_after
        if isinstance(exc, Postponed):
            extra["postponed_until"] = exc.until.isoformat()
    elif isinstance(exc, TimeLimitExceeded):
        code, retryable, message = "time_limit_exceeded", True, "the attempt ran past its time limit"
    else:
        # Anything unexpected counts as retryable: a bug fixed by a deploy, or a blip we did not map.
        code, retryable, message = "unexpected_error", True, f"{type(exc).__name__}: {exc}"
    excerpt = "".join(traceback.format_exception(exc, limit=-TRACEBACK_FRAMES))
    # Stored for good and shown to every reader of the job: a recipient's number appears masked.
    return {
        "code": code,
        "message": mask_phones_in(message[:2000]),
        "retryable": retryable,
        **extra,
        "traceback": mask_phones_in(excerpt[-4000:]),
    }
