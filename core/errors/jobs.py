"""Job failures: how a job attempt ended. The retry policy reads the class (core/engine/retry.py)."""

from __future__ import annotations

from datetime import datetime

from core.errors.base import JobyardError

# -- job failures: how an attempt ended ------------------------------------------------------------


class JobFailure(JobyardError):
    """How a job attempt ended; ``retryable`` says whether another attempt may succeed."""

    code = "job_failed"
    #: Whether another attempt may succeed.
    retryable = True


class RetryableError(JobFailure):
    """A transient failure; another attempt may succeed."""

    code = "retryable"


class PermanentError(JobFailure):
    """Retrying cannot help (bad input, a 4xx from a provider); the job goes to the dead letters."""

    code = "permanent"
    retryable = False


class RateLimitedError(RetryableError):
    """The provider asked us to slow down."""

    code = "rate_limited"

    def __init__(
        self, message: str | None = None, *, retry_after: float = 1.0, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnknownOutcomeError(JobFailure):
    """An outside effect may or may not have happened; a human must decide before it is repeated."""

    code = "unknown_outcome"
    retryable = False


class DataKeyMismatch(PermanentError):
    """A sealed value of the job cannot be opened: its data key is not held, or it is damaged or was
    sealed for another field or job type. Retrying with the same keys cannot help."""

    code = "data_key_mismatch"


class DataKeyUnknown(RetryableError):
    """Opt-outs are hashed under a data key this process does not hold, so it cannot tell whether a
    recipient wrote STOP: it sends nothing. Retried, since giving the process that key fixes it."""

    code = "data_key_unknown"


class LlmNotConfigured(PermanentError):
    """No LLM provider is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL) or JOBYARD_LLM_PROVIDERS."""

    code = "llm_not_configured"


class ScheduleCannotFire(PermanentError):
    """The schedule cannot fire; it is disabled with this code until someone fixes and re-enables it."""

    code = "schedule_cannot_fire"


class Postponed(JobFailure):
    """The job may not run yet (the recipient's quiet hours); it waits until ``until`` for free.

    Not a failure: the attempt is recorded as `postponed` and does not spend the retry budget.
    """

    code = "postponed"

    def __init__(self, until: datetime, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or f"postponed until {until.isoformat()}", code=code)
        self.until = until


class JobCancelled(JobFailure):
    """The job's cancel was asked while it ran (``ctx.stop_if_cancelled()``, or an outbound call the
    cancel aborted): the job ends ``cancelled``, never retried."""

    code = "cancelled"
    retryable = False
