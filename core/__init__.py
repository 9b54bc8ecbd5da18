"""Jobyard's domain logic, persistence and provider clients. Imports neither workers nor control_api.

The names below are the public face for a deployment's own job types (a module named in
JOBYARD_JOB_MODULES)::

    import msgspec
    from core import JobContext, job_type

    class Greet(msgspec.Struct, forbid_unknown_fields=True):
        name: str

    @job_type("greet", payload=Greet, queue="default", max_retries=2, timeout_s=30)
    def greet(ctx: JobContext, payload: Greet) -> dict:
        return {"hello": payload.name}

They are loaded on first use, so ``import core`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.declare import BatchContext, JobContext, job_type
    from core.engine.job_types import Preload, Resource
    from core.errors import (
        JobFailure,
        JobyardError,
        PermanentError,
        Postponed,
        RateLimitedError,
        RetryableError,
        UnknownOutcomeError,
    )

__all__ = [
    "BatchContext",
    "JobContext",
    "JobFailure",
    "JobyardError",
    "PermanentError",
    "Postponed",
    "Preload",
    "RateLimitedError",
    "Resource",
    "RetryableError",
    "UnknownOutcomeError",
    "job_type",
]

#: What a handler raises to say how its job failed; the class decides retries (core/errors/).
_ERRORS = {
    "JobFailure",
    "JobyardError",
    "PermanentError",
    "Postponed",
    "RateLimitedError",
    "RetryableError",
    "UnknownOutcomeError",
}


def __getattr__(name: str) -> Any:
    if name in {"job_type", "JobContext", "BatchContext"}:
        from core.engine import declare

        return getattr(declare, name)
    if name in {"Resource", "Preload"}:
        from core.engine import job_types

        return getattr(job_types, name)
    if name in _ERRORS:
        from core import errors

        return getattr(errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
