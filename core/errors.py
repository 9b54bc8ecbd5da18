"""Every exception of core, one tree. The bottom layer: it imports nothing of Jobyard.

    JobyardError                       code, message, details (e.g. field errors)
    ├── JobFailure                     how a job attempt ended; the retry policy reads the class
    │   ├── RetryableError             another attempt may succeed
    │   │   ├── RateLimitedError       the provider asked us to slow down (retry_after)
    │   │   └── DataKeyUnknown
    │   ├── PermanentError             retrying cannot help: the job goes to the dead letters
    │   │   └── DataKeyMismatch, LlmNotConfigured, ScheduleCannotFire
    │   ├── UnknownOutcomeError        an outside effect may or may not have happened
    │   └── Postponed                  not a failure: the job waits (quiet hours)
    ├── NotFound                       no such job, schedule, key, collection, ...
    ├── Conflict                       the request conflicts with the current state
    ├── InvalidInput                   invalid fields (details lists them)
    │   └── BadRequest                 a request that cannot be read at all (a bad cursor, bad JSON)
    ├── Unauthorized, Forbidden        who is asking, and whether they may
    ├── TooManyRequests                slow down (retry_after)
    ├── Unavailable                    a service Jobyard depends on did not answer
    └── NotConfigured                  a setting is missing or holds a value it cannot take

The API maps each branch to an HTTP status once (control_api/errors.py); a class whose answer differs
from its branch's sits under the branch that answers it (BadCursor is a BadRequest: 400, not 422; a
query for another model, ModelNotServed, is a Conflict as well as a QueryNotEmbedded). The workers
store a job failure's code and retryable flag (core/engine/retry.py); anything else a job raises,
request-level errors included, counts as an unexpected, retryable error, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol


class FieldProblem(Protocol):
    """A field error as the job types report one (core.engine.job_types.FieldError)."""

    def as_dict(self) -> dict[str, str]: ...


class JobyardError(Exception):
    """Something went wrong in Jobyard."""

    #: Stable snake_case code stored on the job and shown to API clients.
    code = "jobyard_error"

    def __init__(self, message: str | None = None, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        if code is not None:
            self.code = code
        #: What an API client is shown besides code and message: field errors, the state met, ...
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


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


# -- not found -------------------------------------------------------------------------------------


class NotFound(JobyardError):
    """What was asked for does not exist."""

    code = "not_found"


class JobNotFound(NotFound):
    """No such job."""

    code = "job_not_found"


class ScheduleNotFound(NotFound):
    """No such schedule."""

    code = "schedule_not_found"


class KeyNotFound(NotFound):
    """No such API key."""

    code = "key_not_found"


class AuditEntryNotFound(NotFound):
    """No such audit entry."""

    code = "audit_entry_not_found"


class CollectionNotFound(NotFound):
    """No such embeddings collection."""

    code = "collection_not_found"


class ScrapeNotFound(NotFound):
    """No such scrape."""

    code = "scrape_not_found"


class ScreenshotNotFound(NotFound):
    """The scrape has no screenshot."""

    code = "screenshot_not_found"


class OptOutNotFound(NotFound):
    """The number has not opted out."""

    code = "opt_out_not_found"


class OutboundMessageNotFound(NotFound):
    """No such outbound message."""

    code = "outbound_message_not_found"


class NotResolved(NotFound):
    """A host name has no address (NXDOMAIN, no answer in time)."""

    code = "not_resolved"


# -- conflict --------------------------------------------------------------------------------------


class Conflict(JobyardError):
    """The request conflicts with the current state."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    """The idempotency key was first used with a different type or payload."""

    code = "idempotency_conflict"

    def __init__(self, index: int, key: str, existing_id: uuid.UUID) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for a different job ({existing_id})",
            details={"index": index, "idempotency_key": key, "existing_job_id": str(existing_id)},
        )
        self.index, self.key, self.existing_id = index, key, existing_id


class _StatusConflict(Conflict):
    """The thing is in a status that does not allow the change; ``details`` names the status."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message, details={"status": status})
        self.status = status


class NotCancellable(_StatusConflict):
    """Only a job that has not finished can be cancelled."""

    code = "not_cancellable"

    def __init__(self, status: str) -> None:
        super().__init__(f"a {status} job cannot be cancelled", status)


class NotReschedulable(_StatusConflict):
    """Only a scheduled job can be rescheduled."""

    code = "not_reschedulable"

    def __init__(self, status: str) -> None:
        super().__init__(f"only a scheduled job can be rescheduled; this one is {status}", status)


class NotResolvable(_StatusConflict):
    """Only a pending or unknown message can be resolved."""

    code = "not_resolvable"

    def __init__(self, status: str) -> None:
        super().__init__(f"only a pending or unknown message can be resolved; this one is {status}", status)


class NotRotatable(Conflict):
    """Only a live key that was not rotated already can be rotated."""

    code = "not_rotatable"


class ClaimLost(Conflict):
    """Another worker or a recovery took the job over; this worker's writes must be dropped."""

    code = "claim_lost"


class BatchClaimLost(Conflict):
    """Some claims of the batch are no longer this worker's: the caller rolls the batch back and
    runs its jobs one by one, each fenced on its own."""

    code = "batch_claim_lost"


# -- invalid input ---------------------------------------------------------------------------------


class InvalidInput(JobyardError):
    """The request has invalid fields; ``details`` lists them (``[{"field", "message"}]``)."""

    code = "validation_error"

    def __init__(self, message: str | None = None, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message or "the request has invalid fields", code=code, details=details)


class InvalidSchedule(InvalidInput):
    """The schedule has invalid fields; ``errors`` says which."""

    def __init__(self, errors: Sequence[FieldProblem]) -> None:
        super().__init__("the schedule has invalid fields", details=[e.as_dict() for e in errors])
        self.errors = list(errors)


class InvalidPayloads(InvalidInput):
    """The payload patch would leave some jobs with an invalid payload; nothing was changed."""

    def __init__(self, job_ids: list[uuid.UUID], errors: list[dict[str, str]]) -> None:
        super().__init__(f"the patched payload of {len(job_ids)} job(s) is invalid", details=errors)
        self.job_ids = job_ids
        #: {"job_id", "field", "message"} for the first MAX_REPORTED_ERRORS bad fields.
        self.errors = errors


class InvalidSelection(InvalidInput):
    """A selection of dead letters names neither ids nor a filter, or both."""

    code = "invalid_selection"


class UnknownJobType(InvalidInput):
    """No job type of that name is registered."""

    code = "unknown_job_type"


class UnknownScope(InvalidInput):
    """An API key scope that is not one."""

    code = "unknown_scope"


class NoNextSlot(InvalidInput):
    """The rule yields no slot after the given time (31 February, or past year 9999)."""

    code = "no_next_slot"


class BadRequest(InvalidInput):
    """The request cannot be read at all."""

    code = "bad_request"


class BadCursor(BadRequest):
    """A page cursor that is not one of ours."""

    code = "bad_cursor"


class MalformedJson(BadRequest):
    """The body is not valid JSON."""

    code = "malformed_json"


# -- who may ask -----------------------------------------------------------------------------------


class Unauthorized(JobyardError):
    """The caller is not known."""

    code = "unauthorized"


class BadSignature(Unauthorized):
    """A webhook without a valid signature."""

    code = "bad_signature"


class Forbidden(JobyardError):
    """The caller, or the address asked for, is not allowed."""

    code = "forbidden"


class AddressRefused(Forbidden):
    """A host may not be reached: it resolves to an address that is not public."""

    code = "address_refused"

    def __init__(self, host: str, address: str, reason: str, *, literal: bool = False) -> None:
        super().__init__(f"{host} is {reason}" if literal else f"{host} resolves to {address}, {reason}")
        self.host, self.address, self.reason = host, address, reason


class TooManyRequests(JobyardError):
    """Slow down; ``retry_after`` says for how many seconds."""

    code = "rate_limited"

    def __init__(
        self, message: str | None = None, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


# -- services --------------------------------------------------------------------------------------


class Unavailable(JobyardError):
    """A service Jobyard depends on did not answer."""

    code = "unavailable"


class QueryNotEmbedded(Unavailable):
    """A search's query could not be embedded; ``code`` says why (`embeddings_unavailable` on a
    timeout). The two subclasses below are the answers that are not an outage."""

    code = "embeddings_unavailable"


class ModelNotServed(Conflict, QueryNotEmbedded):
    """The collection's model is not the one this farm serves."""

    code = "model_not_served"


class QueryRateLimited(TooManyRequests, QueryNotEmbedded):
    """The embedding provider asked to slow down."""

    code = "rate_limited"


class ServicesNotReady(Unavailable):
    """Postgres or Redis was not usable within the wait; the message says which and why."""

    code = "services_not_ready"


class EmbeddedServiceError(Unavailable):
    """An embedded Postgres or Redis could not be started."""

    code = "embedded_service_failed"


class ProviderBusy(Unavailable):
    """A provider answered 502, 503 or 504: tried again a few times within the call."""

    code = "provider_busy"

    def __init__(self, response: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        #: The provider's httpx.Response.
        self.response = response


# -- configuration ---------------------------------------------------------------------------------


class NotConfigured(JobyardError):
    """A setting is missing or holds a value it cannot take."""

    code = "not_configured"


class SettingsError(NotConfigured):
    """An environment variable holds a value its setting cannot take."""

    code = "invalid_setting"


class DatabaseNotConfigured(NotConfigured):
    """DATABASE_URL is not set and no embedded Postgres was started."""

    code = "database_not_configured"


class RedisNotConfigured(NotConfigured):
    """REDIS_URL is not set and no embedded Redis was started."""

    code = "redis_not_configured"


class WebhookNotConfigured(NotConfigured):
    """The WhatsApp webhook's secret or verify token is not set, so the webhook is off."""

    code = "webhook_not_configured"


class DataKeyError(NotConfigured):
    """The data key is missing or malformed."""

    code = "data_key_error"


class SealedValueError(DataKeyError):
    """A sealed value cannot be opened: its key is not in this process's ring, or it is damaged, or
    it was sealed for another field or job type."""

    code = "sealed_value_unopenable"

    def __init__(self, message: str, key_id: str | None, *, key_held: bool) -> None:
        super().__init__(message)
        #: The key id the value names (None when even that cannot be read).
        self.key_id = key_id
        #: Whether this process holds that key (False: a key is missing; True: the value is bad).
        self.key_held = key_held
