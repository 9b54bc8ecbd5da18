"""Recurring schedules: an interval or a cron expression in a timezone; each firing is a normal job.

A schedule that was down for a while fires once and then moves to the next slot after *now*, not
once per missed slot. Firing locks the schedule row (FOR UPDATE SKIP LOCKED) and gives the job an
idempotency key made of the schedule id and the slot, so several schedulers never fire a slot twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import sqlalchemy as sa
from croniter import croniter
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Connection

from core.broker import Publication, publish
from core.db import transaction
from core.job_types import FieldError, UnknownJobType, get_job_type, shown_payload, validate_payload
from core.jobs import NewJob, insert_jobs, utcnow
from core.models import schedules
from core.pagination import page, split_page
from core.settings import Settings


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

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        """The schedule as the API shows it: personal data in the payload masked."""
        m = dict(row._mapping)
        m["payload"] = shown_payload(m["type"], m["payload"])
        return cls(**{f: m[f] for f in cls.__struct_fields__})


class ScheduleNotFound(LookupError):
    pass


class InvalidSchedule(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def check_rule(every_seconds: int | None, cron: str | None, timezone: str) -> list[FieldError]:
    errors = []
    if (every_seconds is None) == (cron is None):
        errors.append(FieldError("every_seconds", "give exactly one of every_seconds and cron"))
    if cron is not None and not croniter.is_valid(cron):
        errors.append(FieldError("cron", f"not a valid cron expression: {cron!r}"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(FieldError("timezone", f"unknown timezone {timezone!r}"))
    return errors


def next_slot(
    every_seconds: int | None, cron: str | None, timezone: str, start_at: datetime, now: datetime
) -> datetime:
    """The first slot strictly after ``now`` (or ``start_at`` itself while it is still ahead)."""
    if start_at > now:
        if every_seconds is not None:
            return start_at
        now = start_at - timedelta(microseconds=1)
    if every_seconds is not None:
        periods = int((now - start_at).total_seconds() // every_seconds) + 1
        return start_at + timedelta(seconds=periods * every_seconds)
    assert cron is not None
    local = now.astimezone(ZoneInfo(timezone))
    following: datetime = croniter(cron, local).get_next(datetime)
    return following.astimezone(now.tzinfo)


def create_schedule(conn: Connection, fields: dict[str, Any]) -> Schedule:
    """Validate and store a schedule. ``fields`` holds the API body's fields."""
    errors = check_rule(fields.get("every_seconds"), fields.get("cron"), fields.get("timezone", "UTC"))
    try:
        job_type = get_job_type(fields["type"])
        payload, payload_errors = validate_payload(job_type, fields["payload"])
        errors += payload_errors
    except UnknownJobType:
        errors.append(FieldError("type", f"unknown job type {fields['type']!r}"))
    if errors:
        raise InvalidSchedule(errors)
    now = utcnow()
    start_at = fields.get("start_at") or now
    values = {
        "id": uuid.uuid4(),
        "type": fields["type"],
        "payload": job_type.seal(payload),
        "every_seconds": fields.get("every_seconds"),
        "cron": fields.get("cron"),
        "timezone": fields.get("timezone", "UTC"),
        "business_key": fields.get("business_key"),
        "max_retries": fields.get("max_retries"),
        "enabled": fields.get("enabled", True),
        "start_at": start_at,
        "created_at": now,
        "updated_at": now,
    }
    if values["cron"] is None and start_at >= now:
        first = start_at  # an interval starts at its start time; a cron rule at its first slot
    else:
        first = next_slot(values["every_seconds"], values["cron"], values["timezone"], start_at, now)
    row = conn.execute(sa.insert(schedules).values(**values, next_run_at=first).returning(*schedules.c)).one()
    return Schedule.from_row(row)


def get_schedule(conn: Connection, schedule_id: uuid.UUID, *, lock: bool = False) -> Schedule:
    query = sa.select(schedules).where(schedules.c.id == schedule_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise ScheduleNotFound(str(schedule_id))
    return Schedule.from_row(row)


def list_schedules(conn: Connection, limit: int, cursor: str | None) -> tuple[list[Schedule], str | None]:
    rows, next_cursor = split_page(
        conn.execute(page(sa.select(schedules), schedules.c.created_at, schedules.c.id, limit, cursor)).all(),
        limit,
    )
    return [Schedule.from_row(r) for r in rows], next_cursor


def update_schedule(conn: Connection, schedule_id: uuid.UUID, changes: dict[str, Any]) -> Schedule:
    """Apply a partial update; a new rule or a re-enable moves next_run_at to the next slot from now."""
    current = get_schedule(conn, schedule_id, lock=True)
    merged = {f: changes.get(f, getattr(current, f)) for f in ("every_seconds", "cron", "timezone")}
    if "every_seconds" in changes and changes["every_seconds"] is not None and "cron" not in changes:
        merged["cron"] = None
    if "cron" in changes and changes["cron"] is not None and "every_seconds" not in changes:
        merged["every_seconds"] = None
    errors = check_rule(merged["every_seconds"], merged["cron"], merged["timezone"])
    if "payload" in changes:
        job_type = get_job_type(current.type)
        payload, payload_errors = validate_payload(job_type, changes["payload"])
        errors += payload_errors
        if payload is not None:
            merged["payload"] = job_type.seal(payload)
    if errors:
        raise InvalidSchedule(errors)
    values: dict[str, Any] = {**merged, "updated_at": utcnow()}
    for name in ("enabled", "business_key", "max_retries"):
        if name in changes:
            values[name] = changes[name]
    rule_changed = any(k in changes for k in ("every_seconds", "cron", "timezone"))
    re_enabled = changes.get("enabled") is True and not current.enabled
    if rule_changed or re_enabled:
        values["next_run_at"] = next_slot(
            merged["every_seconds"], merged["cron"], merged["timezone"], current.start_at, utcnow()
        )
    row = conn.execute(
        sa.update(schedules).where(schedules.c.id == schedule_id).values(**values).returning(*schedules.c)
    ).one()
    return Schedule.from_row(row)


def delete_schedule(conn: Connection, schedule_id: uuid.UUID) -> None:
    if conn.execute(sa.delete(schedules).where(schedules.c.id == schedule_id)).rowcount != 1:
        raise ScheduleNotFound(str(schedule_id))


def fire_due_schedules(settings: Settings, broker: RedisBroker, limit: int = 100) -> int:
    """Create one job for each enabled schedule whose next_run_at has come; returns how many."""
    now = utcnow()
    publications = []
    with transaction(settings) as conn:
        due = conn.execute(
            sa.select(schedules)
            .where(schedules.c.enabled, schedules.c.next_run_at <= now)
            .order_by(schedules.c.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in due:
            s = Schedule.from_row(row)
            new_job = NewJob(
                type=s.type,
                payload=row.payload,  # as stored: still sealed, and insert_jobs keeps it so
                business_key=s.business_key,
                max_retries=s.max_retries,
                idempotency_key=f"schedule:{s.id}:{s.next_run_at.isoformat()}",
            )
            (enqueued,) = insert_jobs(conn, [new_job])
            if enqueued.message_id is not None:
                publications.append(
                    Publication(enqueued.job.id, s.type, enqueued.job.queue, enqueued.message_id, None)
                )
            conn.execute(
                sa.update(schedules)
                .where(schedules.c.id == s.id)
                .values(
                    next_run_at=next_slot(s.every_seconds, s.cron, s.timezone, s.start_at, now),
                    last_run_at=now,
                    last_job_id=enqueued.job.id,
                    updated_at=now,
                )
            )
    return publish(broker, publications)
