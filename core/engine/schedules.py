"""Recurring schedules: an interval or a cron rule in a time zone (core/engine/schedule_rules.py); each
firing is a normal job.

A schedule that was down for a while fires once and then moves to the next slot after *now*, not
once per missed slot. Firing locks the schedule row (FOR UPDATE SKIP LOCKED) and records the slot in
``schedule_firings``, whose primary key (schedule, slot) keeps several schedulers from firing a slot
twice. That namespace is the scheduler's own: a client's idempotency keys cannot collide with it.
A firing is kept as long as the job it made may be (core/engine/retention.py removes older ones,
``delete_old_firings``): a slot once past is never due again, since firing moves ``next_run_at``
past *now*.

A schedule that cannot fire (its job type is gone after a deploy, its stored payload no longer
validates, its rule has no next slot) is disabled with a code and a reason shown by the API; the
other schedules fire on. PATCH it with ``{"enabled": true}`` (and a fix) to start it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.broker import Publication
from core.engine.isolation import describe, isolated, publish_isolated
from core.engine.job_types import FieldError, get_job_type, open_payload, shown_payload, validate_payload
from core.engine.jobs import NewJob, insert_jobs, utcnow
from core.engine.lanes import DEFAULT_PRIORITY
from core.engine.schedule_rules import check_rule, next_slot
from core.engine.timebounds import bounded_utc
from core.errors import (
    DataKeyMismatch,
    InvalidSchedule,
    NoNextSlot,
    ScheduleCannotFire,
    ScheduleNotFound,
    UnknownJobType,
)
from core.platform.db import transaction
from core.platform.pagination import page, split_page
from core.platform.settings import Settings
from core.platform.tables import schedule_firings, schedules
from core.platform.tenants import DEFAULT_TENANT, reached

log = structlog.get_logger(__name__)


class Schedule(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    every_seconds: int | None
    cron: str | None
    timezone: str
    business_key: str | None
    max_retries: int | None
    enabled: bool
    start_at: datetime
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    #: Why the scheduler disabled the schedule (null unless it did): a stable code, a sentence, when.
    disabled_code: str | None = None
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    #: Whose schedule it is (its jobs are that tenant's), and the API key that created it.
    tenant: str = DEFAULT_TENANT
    created_by: uuid.UUID | None = None
    #: The priority of the jobs it fires (0-9, 9 the most urgent).
    priority: int = DEFAULT_PRIORITY

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        """The schedule as the API shows it: personal data in the payload masked."""
        m = dict(row._mapping)
        m["payload"] = shown_payload(m["type"], m["payload"])
        return cls(**{f: m[f] for f in cls.__struct_fields__})


def create_schedule(
    conn: Connection,
    fields: dict[str, Any],
    tenant: str = DEFAULT_TENANT,
    created_by: uuid.UUID | None = None,
) -> Schedule:
    """Validate and store ``tenant``'s schedule. ``fields`` holds the API body's fields;
    ``created_by``, the API key that asked."""
    now = utcnow()
    errors: list[FieldError] = []
    start_at = now
    if fields.get("start_at") is not None:
        bounded, error = bounded_utc(fields["start_at"], "start_at", now)
        if error:
            errors.append(error)
        start_at = bounded or now
    timezone = fields.get("timezone", "UTC")
    errors += check_rule(fields.get("every_seconds"), fields.get("cron"), timezone, start_at, now)
    try:
        job_type = get_job_type(fields["type"])
        payload, payload_errors = validate_payload(job_type, fields["payload"])
        errors += payload_errors
    except UnknownJobType:
        errors.append(FieldError("type", f"unknown job type {fields['type']!r}"))
    if errors:
        raise InvalidSchedule(errors)
    values = {
        "id": uuid.uuid4(),
        "type": fields["type"],
        "payload": job_type.seal(payload),
        "every_seconds": fields.get("every_seconds"),
        "cron": fields.get("cron"),
        "timezone": timezone,
        "business_key": fields.get("business_key"),
        "max_retries": fields.get("max_retries"),
        "enabled": fields.get("enabled", True),
        "start_at": start_at,
        "created_at": now,
        "updated_at": now,
        "tenant": tenant,
        "created_by": created_by,
        "priority": fields.get("priority", DEFAULT_PRIORITY),
    }
    if values["cron"] is None and start_at >= now:
        first = start_at  # an interval starts at its start time; a cron rule at its first slot
    else:
        first = next_slot(values["every_seconds"], values["cron"], timezone, start_at, now)
    row = conn.execute(sa.insert(schedules).values(**values, next_run_at=first).returning(*schedules.c)).one()
    return Schedule.from_row(row)


def get_schedule(
    conn: Connection, schedule_id: uuid.UUID, *, lock: bool = False, tenant: str | None = None
) -> Schedule:
    """The schedule, if ``tenant``'s (anyone's for None): another tenant's is not found."""
    query = sa.select(schedules).where(schedules.c.id == schedule_id, reached(schedules, tenant))
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise ScheduleNotFound(f"no schedule {schedule_id}")
    return Schedule.from_row(row)


def list_schedules(
    conn: Connection, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[Schedule], str | None]:
    query = page(
        sa.select(schedules).where(reached(schedules, tenant)),
        schedules.c.created_at,
        schedules.c.id,
        limit,
        cursor,
    )
    rows, next_cursor = split_page(conn.execute(query).all(), limit)
    return [Schedule.from_row(r) for r in rows], next_cursor


def update_schedule(
    conn: Connection, schedule_id: uuid.UUID, changes: dict[str, Any], tenant: str | None = None
) -> Schedule:
    """Apply a partial update to ``tenant``'s schedule (anyone's for None); a new rule or a re-enable
    moves next_run_at to the next slot from now.

    Re-enabling clears the reason the scheduler disabled it for.
    """
    current = get_schedule(conn, schedule_id, lock=True, tenant=tenant)
    now = utcnow()
    merged = {f: changes.get(f, getattr(current, f)) for f in ("every_seconds", "cron", "timezone")}
    if "every_seconds" in changes and changes["every_seconds"] is not None and "cron" not in changes:
        merged["cron"] = None
    if "cron" in changes and changes["cron"] is not None and "every_seconds" not in changes:
        merged["every_seconds"] = None
    errors = check_rule(merged["every_seconds"], merged["cron"], merged["timezone"], current.start_at, now)
    if "payload" in changes:
        try:
            job_type = get_job_type(current.type)
        except UnknownJobType:
            errors.append(FieldError("type", f"job type {current.type!r} is no longer registered"))
        else:
            payload, payload_errors = validate_payload(job_type, changes["payload"])
            errors += payload_errors
            if payload is not None:
                merged["payload"] = job_type.seal(payload)
    if errors:
        raise InvalidSchedule(errors)
    values: dict[str, Any] = {**merged, "updated_at": now}
    for name in ("enabled", "business_key", "max_retries", "priority"):
        if name in changes:
            values[name] = changes[name]
    rule_changed = any(k in changes for k in ("every_seconds", "cron", "timezone"))
    re_enabled = changes.get("enabled") is True and not current.enabled
    if rule_changed or re_enabled:
        values["next_run_at"] = next_slot(
            merged["every_seconds"], merged["cron"], merged["timezone"], current.start_at, now
        )
    if re_enabled:
        values.update(disabled_code=None, disabled_reason=None, disabled_at=None)
    row = conn.execute(
        sa.update(schedules).where(schedules.c.id == schedule_id).values(**values).returning(*schedules.c)
    ).one()
    return Schedule.from_row(row)


def delete_schedule(conn: Connection, schedule_id: uuid.UUID, tenant: str | None = None) -> None:
    if (
        conn.execute(
            sa.delete(schedules).where(schedules.c.id == schedule_id, reached(schedules, tenant))
        ).rowcount
        != 1
    ):
        raise ScheduleNotFound(f"no schedule {schedule_id}")


# -- firing ------------------------------------------------------------------------------------


def fire_due_schedules(settings: Settings, broker: RedisBroker, limit: int = 100) -> int:
    """Create one job for each enabled schedule whose next_run_at has come; returns how many.

    Each schedule fires in a savepoint of its own: one that cannot fire is disabled with a code, and
    the others fire on.
    """
    now = utcnow()
    publications = []
    with transaction(settings) as conn:
        # Ids only: a row is read in its own savepoint, so even one Python cannot read fails alone.
        due = (
            conn.execute(
                sa.select(schedules.c.id)
                .where(schedules.c.enabled, schedules.c.next_run_at <= now)
                .order_by(schedules.c.next_run_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        for schedule_id in due:
            fired = isolated(
                conn,
                partial(_fire, conn, schedule_id, now),
                partial(_disable, conn, schedule_id),
                "schedule_fire_failed",
                schedule_id=str(schedule_id),
            )
            if fired is not None:
                publications.append(fired)
    return publish_isolated(settings, broker, publications)


def _fire(conn: Connection, schedule_id: uuid.UUID, now: datetime) -> Publication | None:
    """Fire one due (and locked) schedule: the job of its slot, then its next slot."""
    row = conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).one()
    try:
        job_type = get_job_type(row.type)
    except UnknownJobType:
        raise ScheduleCannotFire(
            f"job type {row.type!r} is not registered (was it removed, or is a job module missing "
            "from JOBYARD_JOB_MODULES?)",
            code="unknown_job_type",
        ) from None
    try:
        opened = open_payload(job_type, row.payload)
    except DataKeyMismatch as exc:
        raise ScheduleCannotFire(exc.message, code=exc.code) from None
    _, errors = validate_payload(job_type, opened)
    if errors:
        reasons = "; ".join(f"{e.field}: {e.message}" for e in errors)
        raise ScheduleCannotFire(f"the stored payload no longer validates: {reasons}", code="payload_invalid")
    slot: datetime = row.next_run_at
    publication, job_id = None, row.last_job_id
    claimed = conn.execute(
        pg_insert(schedule_firings)
        .values(schedule_id=schedule_id, slot=slot, fired_at=now)
        .on_conflict_do_nothing()
        .returning(schedule_firings.c.slot)
    ).first()
    if claimed is not None:
        new_job = NewJob(
            type=row.type,
            payload=row.payload,  # as stored: still sealed, and insert_jobs keeps it so
            business_key=row.business_key,
            max_retries=row.max_retries,
            tenant=row.tenant,
            priority=row.priority,
        )
        (enqueued,) = insert_jobs(conn, [new_job])
        job_id = enqueued.job.id
        conn.execute(
            sa.update(schedule_firings)
            .where(schedule_firings.c.schedule_id == schedule_id, schedule_firings.c.slot == slot)
            .values(job_id=job_id)
        )
        if enqueued.message_id is not None:
            publication = Publication(
                job_id, row.type, enqueued.job.queue, enqueued.message_id, None, row.tenant, row.priority
            )
    else:
        log.warning("schedule_slot_already_fired", schedule_id=str(schedule_id), slot=slot.isoformat())
    values: dict[str, Any] = {"last_run_at": now, "last_job_id": job_id, "updated_at": now}
    try:
        values["next_run_at"] = next_slot(row.every_seconds, row.cron, row.timezone, row.start_at, now)
    except NoNextSlot as exc:
        # This slot fired; there is no other. The schedule stays, disabled, to show what happened.
        values.update(_disabled_values("no_next_slot", str(exc), now))
    except ValueError as exc:
        values.update(_disabled_values("unknown_timezone", str(exc), now))
    if values.get("disabled_code"):
        log.warning("schedule_disabled", schedule_id=str(schedule_id), code=values["disabled_code"])
    conn.execute(sa.update(schedules).where(schedules.c.id == schedule_id).values(**values))
    return publication


def _disabled_values(code: str, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "enabled": False,
        "disabled_code": code,
        "disabled_reason": reason,
        "disabled_at": now,
        "updated_at": now,
    }


def _disable(conn: Connection, schedule_id: uuid.UUID, exc: Exception) -> None:
    code = exc.code if isinstance(exc, ScheduleCannotFire) else "fire_failed"
    conn.execute(
        sa.update(schedules)
        .where(schedules.c.id == schedule_id)
        .values(**_disabled_values(code, describe(exc), utcnow()))
    )
    log.warning("schedule_disabled", schedule_id=str(schedule_id), code=code)


#: A batch of firings before a time: per schedule through the primary key (schedule, slot), so the
#: cost is a probe per schedule, whatever the number of firings kept.
_OLD_FIRINGS = """
DELETE FROM schedule_firings f USING (
    SELECT old.schedule_id, old.slot FROM schedules s
    CROSS JOIN LATERAL (
        SELECT schedule_id, slot FROM schedule_firings
        WHERE schedule_id = s.id AND slot < :before
        ORDER BY slot LIMIT :n FOR UPDATE SKIP LOCKED
    ) old
    LIMIT :n
) doomed
WHERE f.schedule_id = doomed.schedule_id AND f.slot = doomed.slot
"""


def delete_old_firings(conn: Connection, before: datetime, limit: int) -> int:
    """Remove up to ``limit`` records of slots fired before ``before``; returns how many went.

    Rows another transaction holds are skipped, so pruners side by side never remove the same one."""
    return int(conn.execute(sa.text(_OLD_FIRINGS), {"before": before, "n": limit}).rowcount)
