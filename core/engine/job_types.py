"""Job types: what the farm knows about each kind of job (its handler too), the registry that
``@job_type`` (core/engine/declare.py) fills, and payload validation against each type's schema."""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from core.errors import DataKeyMismatch, SealedValueError, UnknownJobType
from core.platform.crypto import data_cipher, key_label, looks_sealed, masked
from core.platform.settings import Settings
from core.platform.tables import PRUNED_STATUSES


class Resource(Protocol):
    """Something a job type's handler needs once per worker process (a model, a browser).

    A worker process starts it at boot, before it takes a message, only if it consumes the queue of a
    type that declares it (the API, the scheduler and the workers of other queues never do), and
    stops it at shutdown, after the running jobs finished. A handler reaches it directly (it is a
    module-level object of its feature package); one that the boot did not start may start itself on
    first use.
    """

    def start(self, settings: Settings) -> None: ...

    def stop(self) -> None: ...


class Preload:
    """A resource that imports modules: libraries a handler imports at its first call, so that the
    processes that never run the type (the API, the workers of other queues) do not load them, are
    loaded at boot in the processes that do, and their first job does not wait for the import."""

    def __init__(self, *modules: str) -> None:
        self.modules = modules

    def start(self, settings: Settings) -> None:
        for name in self.modules:
            importlib.import_module(name)

    def stop(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a type's finished jobs are kept, per final status, in seconds after they finished.

    None: the setting's (JOBYARD_RETAIN_SUCCEEDED, _CANCELLED, _DEAD); 0: kept forever.
    """

    succeeded: float | None = None
    cancelled: float | None = None
    dead: float | None = None

    @classmethod
    def declared(cls, type_name: str, retain: Mapping[str, float] | None) -> Retention:
        """The ``retain={...}`` of a declaration, checked: only final statuses, seconds >= 0."""
        if retain is None:
            return cls()
        if not isinstance(retain, Mapping):
            raise ValueError(f"job type {type_name!r}: retain must map statuses to seconds, not {retain!r}")
        values: dict[str, float] = {}
        for status, seconds in retain.items():
            if status not in PRUNED_STATUSES:
                raise ValueError(
                    f"job type {type_name!r}: retain names {status!r}; only finished jobs are removed: "
                    f"{', '.join(PRUNED_STATUSES)}"
                )
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not math.isfinite(seconds)
            ):
                raise ValueError(f"job type {type_name!r}: retain[{status!r}] must be a number of seconds")
            if seconds < 0:
                raise ValueError(
                    f"job type {type_name!r}: retain[{status!r}] is negative (0 keeps them forever)"
                )
            values[status] = float(seconds)
        return cls(**values)

    def seconds(self, status: str, settings: Settings) -> float:
        """Seconds a job of this type that ended ``status`` is kept; 0: forever."""
        own: float | None = getattr(self, status)
        if own is not None:
            return own
        default: float = getattr(settings, f"retain_{status}_s")
        return default


@dataclass(frozen=True, slots=True)
class JobType:
    """What the farm knows about one kind of job; each type is one Dramatiq actor on its own queue.

    Declared with ``@job_type`` (core/engine/declare.py), which fills in the handler.
    """

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
    #: Runs one job: ``(JobContext, payload) -> result``. None for a type no worker runs.
    handler: Callable[..., Any] | None = None
    #: False for a handler with an effect outside Postgres: it runs outside the job's transaction.
    transactional: bool = True
    #: Runs many jobs of the type in one transaction: ``(BatchContext, payloads) -> results``.
    batch: Callable[..., list[Any]] | None = None
    #: What its handler needs once per worker process, started at boot where its queue is consumed.
    resources: tuple[Resource, ...] = ()
    #: How long its finished jobs are kept, when not as long as the settings say.
    retain: Retention = Retention()

    @property
    def queue_name(self) -> str:
        return self.queue or self.name

    def seal(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload as stored in Postgres: each sealed field's clear value sealed fresh, bound to
        this type and field.

        A value that is already sealed is carried forward as it is: only a stored row's payload
        (a schedule's firing) holds one, since ``validate_payload`` refuses a sealed-looking value in
        a sealed field, so a client can never hand in a ciphertext. If a carried value does not
        belong here, opening it at claim time fails that job alone (`data_key_mismatch`).
        """
        if not self.sealed_fields:
            return payload
        cipher = data_cipher()
        return {
            k: cipher.seal(v, payload_context(self.name, k))
            if k in self.sealed_fields and isinstance(v, str) and not looks_sealed(v)
            else v
            for k, v in payload.items()
        }


def payload_context(type_name: str, field: str) -> str:
    """What a sealed payload field is bound to: its job type and field (AES-GCM associated data)."""
    return f"payload:{type_name}:{field}"


def open_payload(job_type: JobType, stored: dict[str, Any], *, keep: Collection[str] = ()) -> dict[str, Any]:
    """A stored payload with the type's sealed fields opened, for the handler that runs it.

    Only the fields the type declares sealed are opened; any other string is data, whatever it
    starts with. Fields in ``keep`` are left as stored (a redrive's patch replaces them). Raises
    DataKeyMismatch, naming the field and the key id, when a sealed field does not open.
    """
    fields = [f for f in job_type.sealed_fields if f not in keep and looks_sealed(stored.get(f))]
    if not fields:
        return stored
    cipher = data_cipher()
    opened = dict(stored)
    for f in fields:
        try:
            opened[f] = cipher.open(stored[f], payload_context(job_type.name, f))
        except SealedValueError as exc:
            raise DataKeyMismatch(_mismatch_message(job_type.name, f, exc)) from None
    return opened


def _mismatch_message(type_name: str, field: str, exc: SealedValueError) -> str:
    what = f"payload.{field} of this {type_name} job {exc}"
    if exc.key_id is not None and not exc.key_held:
        return (
            f"{what}. Give the workers that data key ({key_label(exc.key_id)}, in JOBYARD_DATA_KEYS_OLD), "
            "then redrive the job; or redrive it with a payload patch that sets the field again"
        )
    return f"{what}. It cannot be run as stored: redrive it with a payload patch that sets the field again"


def same_payload(job_type: JobType, first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two stored payloads hold the same values. Sealing is randomised (a fresh nonce each
    time), so sealed fields are compared opened; one that does not open compares as stored."""
    if first.keys() != second.keys():
        return False
    for k, a in first.items():
        b = second[k]
        if a == b:
            continue
        if k not in job_type.sealed_fields or not isinstance(a, str) or not isinstance(b, str):
            return False
        try:
            if open_payload(job_type, {k: a}) != open_payload(job_type, {k: b}):
                return False
        except DataKeyMismatch:
            return False
    return True


def shown_payload(type_name: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as the API shows it: the type's sealed fields masked (``+44*******789``)."""
    job_type = _registry.get(type_name)
    if job_type is None or not job_type.sealed_fields:
        return stored
    return {
        k: masked(v, payload_context(type_name, k))
        if k in job_type.sealed_fields and isinstance(v, str)
        else v
        for k, v in stored.items()
    }


_registry: dict[str, JobType] = {}
_registry_lock = threading.Lock()


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


# -- payload validation ------------------------------------------------------------------------


#: Why a sealed field's value that looks sealed is refused: client input is never taken as ciphertext.
SEALED_INPUT_MESSAGE = (
    "looks like a sealed value (jy1:..., jy2:...); send the value in clear: Jobyard seals it itself"
)


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
    sealed_looking = [
        FieldError(f"{prefix}.{f}", SEALED_INPUT_MESSAGE)
        for f in job_type.sealed_fields
        if looks_sealed(normalised.get(f))
    ]
    if sealed_looking:
        return None, sealed_looking
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
