"""Every exception of core, one tree. The bottom layer: it imports nothing of Jobyard.
The classes live in four modules (base, jobs, requests, services); import them from here.

    JobyardError                       code, message, details (e.g. field errors)
    ├── JobFailure                     how a job attempt ended; the retry policy reads the class
    │   ├── RetryableError             another attempt may succeed
    │   │   ├── RateLimitedError       the provider asked us to slow down (retry_after)
    │   │   └── DataKeyUnknown
    │   ├── PermanentError             retrying cannot help: the job goes to the dead letters
    │   │   └── DataKeyMismatch, LlmNotConfigured, ScheduleCannotFire
    │   ├── UnknownOutcomeError        an outside effect may or may not have happened
│   ├── JobCancelled               a cancel asked while the job ran: it ends cancelled
    │   └── Postponed                  not a failure: the job waits (quiet hours)
    ├── NotFound                       no such job, schedule, key, collection, ...
    ├── Conflict                       the request conflicts with the current state
    ├── InvalidInput                   invalid fields (details lists them)
    │   └── BadRequest                 a request that cannot be read at all (a bad cursor, bad JSON)
    ├── Unauthorized, Forbidden        who is asking, and whether they may
    ├── TooManyRequests                slow down (retry_after)
    │   └── TenantQueueFull            the tenant's cap on queued jobs is reached
    ├── Unavailable                    a service Jobyard depends on did not answer
    └── NotConfigured                  a setting is missing or holds a value it cannot take

The API maps each branch to an HTTP status once (control_api/errors.py); a class whose answer differs
from its branch's sits under the branch that answers it (BadCursor is a BadRequest: 400, not 422; a
query for another model, ModelNotServed, is a Conflict as well as a QueryNotEmbedded). The workers
store a job failure's code and retryable flag (core/engine/retry.py); anything else a job raises,
request-level errors included, counts as an unexpected, retryable error, as before.
"""

from __future__ import annotations

from core.errors.base import (
    FieldProblem,
    JobyardError,
)
from core.errors.jobs import (
    DataKeyMismatch,
    DataKeyUnknown,
    JobCancelled,
    JobFailure,
    LlmNotConfigured,
    PermanentError,
    Postponed,
    RateLimitedError,
    RetryableError,
    ScheduleCannotFire,
    UnknownOutcomeError,
)
from core.errors.requests import (
    AddressRefused,
    AssistantNotFound,
    AuditEntryNotFound,
    BadCursor,
    BadRequest,
    BadSignature,
    BatchClaimLost,
    ChatNotFound,
    ClaimLost,
    CollectionNotFound,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    InvalidPayloads,
    InvalidSchedule,
    InvalidSelection,
    InvalidTenant,
    JobNotFound,
    KeyNotFound,
    MalformedJson,
    NoNextSlot,
    NotCancellable,
    NotFound,
    NotReschedulable,
    NotResolvable,
    NotResolved,
    NotRetryable,
    NotRotatable,
    OptOutNotFound,
    OutboundMessageNotFound,
    QueueNotFound,
    ScheduleNotFound,
    ScrapeNotFound,
    ScreenshotNotFound,
    TenantLlmNotFound,
    TenantQueueFull,
    TooManyRequests,
    Unauthorized,
    UnknownJobType,
    UnknownScope,
    WebhookEndpointNotFound,
    WhatsAppNumberNotFound,
    WhatsAppNumberTaken,
    WorkflowNotFound,
)
from core.errors.services import (
    DatabaseNotConfigured,
    DataKeyError,
    EmbeddedServiceError,
    ModelNotServed,
    NotConfigured,
    ProviderBusy,
    QueryNotEmbedded,
    QueryRateLimited,
    RedisNotConfigured,
    SealedValueError,
    ServicesNotReady,
    SettingsError,
    Unavailable,
    WebhookNotConfigured,
)

__all__ = [
    "AddressRefused",
    "AssistantNotFound",
    "AuditEntryNotFound",
    "BadCursor",
    "BadRequest",
    "BadSignature",
    "BatchClaimLost",
    "ChatNotFound",
    "ClaimLost",
    "CollectionNotFound",
    "Conflict",
    "DataKeyError",
    "DataKeyMismatch",
    "DataKeyUnknown",
    "DatabaseNotConfigured",
    "EmbeddedServiceError",
    "FieldProblem",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidInput",
    "InvalidPayloads",
    "InvalidSchedule",
    "InvalidSelection",
    "InvalidTenant",
    "JobCancelled",
    "JobFailure",
    "JobNotFound",
    "JobyardError",
    "KeyNotFound",
    "LlmNotConfigured",
    "MalformedJson",
    "ModelNotServed",
    "NoNextSlot",
    "NotCancellable",
    "NotConfigured",
    "NotFound",
    "NotReschedulable",
    "NotResolvable",
    "NotResolved",
    "NotRetryable",
    "NotRotatable",
    "OptOutNotFound",
    "OutboundMessageNotFound",
    "PermanentError",
    "Postponed",
    "ProviderBusy",
    "QueryNotEmbedded",
    "QueryRateLimited",
    "QueueNotFound",
    "RateLimitedError",
    "RedisNotConfigured",
    "RetryableError",
    "ScheduleCannotFire",
    "ScheduleNotFound",
    "ScrapeNotFound",
    "ScreenshotNotFound",
    "SealedValueError",
    "ServicesNotReady",
    "SettingsError",
    "TenantLlmNotFound",
    "TenantQueueFull",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnknownJobType",
    "UnknownOutcomeError",
    "UnknownScope",
    "WebhookEndpointNotFound",
    "WebhookNotConfigured",
    "WhatsAppNumberNotFound",
    "WhatsAppNumberTaken",
    "WorkflowNotFound",
]
