"""Request and response bodies of the control API (msgspec Structs, validated at the edge)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from core.engine.job_types import FieldError, get_job_type, validate_payload
from core.engine.jobs import Job, NewJob, utcnow
from core.engine.lanes import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from core.engine.queries import Attempt
from core.engine.templates import has_templates
from core.engine.timebounds import HORIZON_S, bounded_utc
from core.engine.workflow_spec import MAX_STEPS, NewWorkflow, StepSpec, check_steps
from core.engine.workflows import Workflow
from core.errors import UnknownJobType
from core.platform.tenants import DEFAULT_TENANT

Key = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: Orders a tenant's jobs within its share of the workers; never another tenant's.
Priority = Annotated[
    int,
    msgspec.Meta(
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        description="0-9, 9 the most urgent: which of the tenant's queued jobs a worker takes first",
    ),
]
#: Delays and offsets share the horizon of client times (core/engine/timebounds.py).
MAX_DELAY_S = HORIZON_S


class JobIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    payload: dict[str, Any]
    idempotency_key: Key | None = None
    business_key: Key | None = None
    run_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    delay_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_DELAY_S)] | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=50)] | None = None
    priority: Priority = DEFAULT_PRIORITY

    def to_new_job(
        self,
        request_id: str | None,
        prefix: str = "",
        *,
        tenant: str = DEFAULT_TENANT,
        created_by: uuid.UUID | None = None,
    ) -> tuple[NewJob | None, list[FieldError]]:
        """Check the payload against the type's schema; every bad field is listed. The job is
        ``tenant``'s, asked for by the key ``created_by``."""
        try:
            job_type = get_job_type(self.type)
        except UnknownJobType:
            return None, [FieldError(f"{prefix}type", f"unknown job type {self.type!r}")]
        payload, errors = validate_payload(job_type, self.payload, prefix=f"{prefix}payload")
        if self.run_at is not None and self.delay_seconds is not None:
            errors.append(FieldError(f"{prefix}delay_seconds", "give run_at or delay_seconds, not both"))
        run_at = self.run_at
        if run_at is not None:
            run_at, error = bounded_utc(run_at, f"{prefix}run_at", utcnow())
            errors += [error] if error else []
        if errors:
            return None, errors
        if self.delay_seconds:
            run_at = utcnow() + timedelta(seconds=self.delay_seconds)
        return (
            NewJob(
                type=self.type,
                payload=payload,
                idempotency_key=self.idempotency_key,
                business_key=self.business_key,
                run_at=run_at,
                max_retries=self.max_retries,
                request_id=request_id,
                tenant=tenant,
                created_by=created_by,
                priority=self.priority,
            ),
            [],
        )


class BatchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    jobs: Annotated[list[JobIn], msgspec.Meta(min_length=1, max_length=1000)]


class RescheduleIn(msgspec.Struct, forbid_unknown_fields=True):
    run_at: Annotated[datetime, msgspec.Meta(tz=True)]

    def checked_run_at(self) -> tuple[datetime | None, list[FieldError]]:
        """The new due time in UTC, or why it is refused (outside the horizon)."""
        run_at, error = bounded_utc(self.run_at, "run_at", utcnow())
        return run_at, [error] if error else []


class StepIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    after_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_DELAY_S)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    payload: dict[str, Any]
    idempotency_key: Key | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=50)] | None = None
    priority: Priority = DEFAULT_PRIORITY


class SequenceIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    business_key: Key
    anchor_at: Annotated[datetime, msgspec.Meta(tz=True)]
    steps: Annotated[list[StepIn], msgspec.Meta(min_length=1, max_length=100)]

    def to_job_ins(self) -> tuple[list[JobIn], list[FieldError]]:
        """Each step as a job due at anchor + after_seconds, all sharing the business key; or the
        times that fall outside the horizon (the anchor, or a step's anchor + after_seconds)."""
        now = utcnow()
        anchor, error = bounded_utc(self.anchor_at, "anchor_at", now)
        if anchor is None:
            return [], [error] if error else []
        job_ins, errors = [], []
        for index, step in enumerate(self.steps):
            field = f"steps[{index}].after_seconds"
            run_at, error = bounded_utc(anchor + timedelta(seconds=step.after_seconds), field, now)
            if error:
                errors.append(FieldError(field, f"anchor_at + after_seconds {error.message}"))
            job_ins.append(
                JobIn(
                    type=step.type,
                    payload=step.payload,
                    business_key=self.business_key,
                    idempotency_key=step.idempotency_key,
                    run_at=run_at,
                    max_retries=step.max_retries,
                    priority=step.priority,
                )
            )
        return job_ins, errors


class SequenceOut(msgspec.Struct):
    business_key: str
    jobs: list[Job]


class JobList(msgspec.Struct):
    items: list[Job]
    next_cursor: str | None


class BatchOut(msgspec.Struct):
    items: list[Job]


class AttemptList(msgspec.Struct):
    items: list[Attempt]


class CancelByKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    business_key: Key


class CancelledCount(msgspec.Struct):
    cancelled: int


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorOut(msgspec.Struct):
    error: ErrorBody


class WorkflowStepIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    payload: dict[str, Any]
    after: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=MAX_STEPS)
    ] = msgspec.field(default_factory=list)
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=50)] | None = None
    priority: Priority = DEFAULT_PRIORITY


class WorkflowIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    steps: dict[Annotated[str, msgspec.Meta(max_length=200)], WorkflowStepIn]
    business_key: Key | None = None
    idempotency_key: Key | None = None

    def to_new_workflow(
        self, request_id: str | None, *, tenant: str, created_by: uuid.UUID | None
    ) -> tuple[NewWorkflow | None, list[FieldError]]:
        """The workflow of ``tenant``, or every reason it cannot be one (core.engine.workflows)."""
        specs = [
            StepSpec(
                name=name,
                type=step.type,
                payload=step.payload,
                after=tuple(step.after),
                priority=step.priority,
                max_retries=step.max_retries,
            )
            for name, step in self.steps.items()
        ]
        errors = check_steps(specs)
        if errors:
            return None, errors
        # Validated payloads are normalised (defaults filled in), as a job's are.
        specs = [
            s
            if has_templates(s.payload)
            else replace(s, payload=validate_payload(get_job_type(s.type), s.payload)[0])
            for s in specs
        ]
        return (
            NewWorkflow(
                steps=specs,
                business_key=self.business_key,
                idempotency_key=self.idempotency_key,
                tenant=tenant,
                created_by=created_by,
                request_id=request_id,
            ),
            [],
        )


class WorkflowList(msgspec.Struct):
    items: list[Workflow]
