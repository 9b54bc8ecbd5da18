"""What a request can get wrong: not found, conflict, invalid input, who may ask, too many requests.
control_api/errors.py gives each branch its HTTP status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from core.errors.base import FieldProblem, JobyardError

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


class QueueNotFound(NotFound):
    """No job type uses a queue of that name (core/engine/pauses.py)."""

    code = "queue_not_found"


class CollectionNotFound(NotFound):
    """No such embeddings collection."""

    code = "collection_not_found"


class WorkflowNotFound(NotFound):
    """No such workflow."""

    code = "workflow_not_found"


class WebhookEndpointNotFound(NotFound):
    """No such webhook endpoint."""

    code = "webhook_endpoint_not_found"


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


class WhatsAppNumberNotFound(NotFound):
    """The tenant has no WhatsApp number of its own (it sends through the farm's)."""

    code = "whatsapp_number_not_found"


class TenantLlmNotFound(NotFound):
    """The tenant has no LLM provider chain of its own (its jobs ask the farm's)."""

    code = "tenant_llm_not_found"


class AssistantNotFound(NotFound):
    """The tenant has no assistant configured (nothing is answered automatically)."""

    code = "assistant_not_found"


class ChatNotFound(NotFound):
    """No such chat, or none flagged for a human."""

    code = "chat_not_found"


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


class NotRetryable(_StatusConflict):
    """Only a job waiting for its time (scheduled, or retrying after a failure) can be run now."""

    code = "not_retryable"

    def __init__(self, status: str) -> None:
        super().__init__(f"only a scheduled or retrying job can be run now; this one is {status}", status)


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


class WhatsAppNumberTaken(Conflict):
    """The phone number id is another tenant's, or the farm's own: a webhook must find one owner."""

    code = "whatsapp_number_taken"


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


class InvalidTenant(InvalidInput):
    """A tenant name that is not a slug."""

    code = "invalid_tenant"


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
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retry_after = retry_after


class TenantQueueFull(TooManyRequests):
    """The tenant has as many jobs waiting for a worker as its cap allows (core/access/quotas.py)."""

    code = "tenant_queue_full"
