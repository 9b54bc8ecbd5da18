"""One error tree for everything a job can raise. Retry policy reads the class, never the text."""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

from dramatiq.middleware.time_limit import TimeLimitExceeded

from core.platform.crypto import mask_phones_in


class JobyardError(Exception):
    """Something went wrong in Jobyard."""

    #: Stable snake_case code stored on the job and shown to API clients.
    code = "jobyard_error"
    #: Whether another attempt may succeed.
    retryable = True

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RetryableError(JobyardError):
    """A transient failure; another attempt may succeed."""

    code = "retryable"


class PermanentError(JobyardError):
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


class UnknownOutcomeError(JobyardError):
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


class Postponed(JobyardError):
    """The job may not run yet (the recipient's quiet hours); it waits until ``until`` for free.

    Not a failure: the attempt is recorded as `postponed` and does not spend the retry budget.
    """

    code = "postponed"

    def __init__(self, until: datetime, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or f"postponed until {until.isoformat()}", code=code)
        self.until = until


#: Frames of traceback kept on a stored error: enough to find the line, small enough for a row.
TRACEBACK_FRAMES = 8


def error_record(exc: BaseException) -> dict[str, Any]:
    """The JSON stored on a job and an attempt for an exception."""
    extra: dict[str, Any] = {}
    if isinstance(exc, JobyardError):
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
