"""Job types: what the farm knows about each kind of job, the registry the built-in and a deployment's
own job modules fill, and payload validation against each type's schema."""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from core.crypto import data_cipher, is_sealed, masked
from core.settings import Settings, get_settings


@dataclass(frozen=True, slots=True)
class JobType:
    """What the farm knows about one kind of job; each type is one Dramatiq actor on its own queue."""

    name: str
    payload: type[msgspec.Struct]
    queue: str = ""
    #: Retries after the first attempt. Dramatiq's default (20, backing off up to 7 days) is far too many.
    max_retries: int = 3
    min_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    #: Longest run of one attempt; Dramatiq's TimeLimit interrupts Python code at this point, and the
    #: scheduler recovers runs stuck in C code or blocking calls a grace period later.
    timeout_s: float = 300.0
    #: Rate-limited attempts do not spend the retry budget, but they are bounded so a job cannot
    #: wait forever: past this many it goes to the dead letters.
    max_rate_limit_waits: int = 20
    description: str = ""
    #: Largest payload (as JSON) a job of this type may carry; a queue is not a blob store.
    max_payload_bytes: int = 64 * 1024
    #: Top-level payload fields holding personal data (phone numbers): sealed before the payload is
    #: stored, opened for the handler, masked wherever the payload is shown.
    sealed_fields: tuple[str, ...] = ()

    @property
    def queue_name(self) -> str:
        return self.queue or self.name

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload as stored in Postgres: sealed fields encrypted (already sealed ones kept)."""
        if not self.sealed_fields:
            return payload
        cipher = data_cipher()
        return {
            k: cipher.seal(v) if k in self.sealed_fields and isinstance(v, str) else v
            for k, v in payload.items()
        }


def open_payload(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored payload with its sealed fields decrypted, for the handler that runs it."""
    if not any(is_sealed(v) for v in stored.values()):
        return stored
    cipher = data_cipher()
    return {k: cipher.open(v) if is_sealed(v) else v for k, v in stored.items()}


def shown_payload(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as the API shows it: sealed fields masked (``+44*******789``)."""
    if not any(is_sealed(v) for v in stored.values()):
        return stored
    return {k: masked(v) if is_sealed(v) else v for k, v in stored.items()}


class UnknownJobType(LookupError):
    pass


_registry: dict[str, JobType] = {}
_registry_lock = threading.Lock()
#: Modules that define the built-in job types; JOBYARD_JOB_MODULES adds a deployment's own.
BUILTIN_JOB_MODULES = ("core.unread", "core.messaging", "core.ai_reply", "core.embeddings", "core.scrape")


def register_job_type(job_type: JobType) -> JobType:
    with _registry_lock:
        existing = _registry.get(job_type.name)
        if existing is not None and existing != job_type:
            raise ValueError(f"job type {job_type.name!r} is already registered differently")
        _registry[job_type.name] = job_type
    return job_type


def get_job_type(name: str) -> JobType:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownJobType(name) from None


def job_types() -> dict[str, JobType]:
    return dict(_registry)


def load_job_modules(settings: Settings | None = None) -> list[str]:
    """Import the modules that register job types: the built-ins, then JOBYARD_JOB_MODULES."""
    settings = settings or get_settings()
    modules = [*BUILTIN_JOB_MODULES, *settings.job_modules]
    for name in modules:
        importlib.import_module(name)
    return modules


# -- payload validation ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def validate_payload(job_type: JobType, data: Any, prefix: str = "payload") -> tuple[Any, list[FieldError]]:
    """Check ``data`` against the type's schema and list every bad field, not only the first.

    Returns the normalised payload (defaults filled in, as stored and compared for idempotency).
    """
    if not isinstance(data, dict):
        return None, [FieldError(prefix, "must be an object")]
    schema = job_type.payload
    try:
        # The common case, valid input, in one call; the field-by-field walk names every error.
        value = msgspec.convert(data, schema)
    except msgspec.ValidationError as first_error:
        errors = _field_errors(schema, data, prefix)
        # No field is wrong on its own: a cross-field check in __post_init__ failed.
        return None, errors or [FieldError(prefix, str(first_error))]
    normalised = msgspec.to_builtins(value)
    size = len(msgspec.json.encode(normalised))
    if size > job_type.max_payload_bytes:
        message = f"is {size} bytes as JSON; a {job_type.name} payload may have at most {job_type.max_payload_bytes}"
        return None, [FieldError(prefix, message)]
    return normalised, []


def _field_errors(schema: type[msgspec.Struct], data: dict[str, Any], prefix: str) -> list[FieldError]:
    errors: list[FieldError] = []
    fields = msgspec.structs.fields(schema)
    known = {f.encode_name for f in fields}
    for f in fields:
        if f.encode_name not in data:
            if f.required:
                errors.append(FieldError(f"{prefix}.{f.encode_name}", "is required"))
            continue
        try:
            msgspec.convert(data[f.encode_name], f.type)
        except msgspec.ValidationError as exc:
            errors.append(FieldError(f"{prefix}.{f.encode_name}", str(exc)))
    if schema.__struct_config__.forbid_unknown_fields:
        errors.extend(
            FieldError(f"{prefix}.{key}", "is not a known field") for key in data if key not in known
        )
    return errors
