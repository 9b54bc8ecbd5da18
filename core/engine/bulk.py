"""Cancel, run now or reschedule many jobs at once, in any state: by ids, or every job a filter matches.

The dead letters' pattern (core/engine/redrive.py) for the rest of the jobs: a dry run says how many
jobs the action would change and how many it would leave (each by state, e.g. 40 `succeeded` a retry
does not run); the action needs a reason and writes one audit entry (`jobs.cancel`, `jobs.retry`,
`jobs.reschedule`) with the selection, the counts and who asked.

The action walks the matching jobs newest first in batches, each its own transaction, by keyset on
(created_at, id) over the same indexes as the list: a million jobs are a thousand short transactions,
not one that holds a million row locks against the workers. Only jobs created before the action began
are taken, and the walk only moves forward, so a job that changes state meanwhile (a retry that fails
again) is not taken twice. Only the live table is walked: a job moved to the history is final, and no
action applies to it. A job another transaction holds at that moment (a worker claiming it) is left
alone (SKIP LOCKED) and not counted as changed. A cancel asks each running job's worker to stop it,
as POST /v1/jobs/{id}/cancel does (counted as "stopping": it ends `cancelled` unless it finishes first).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from core.engine import audit
from core.engine.deadletters import PREVIEW_SIZE, any_id, newest_first
from core.engine.jobs import CANCELLABLE, Job, JobStatus, utcnow
from core.engine.queries import WAITING, JobFilter, cancel_values, filter_where, request_cancel
from core.errors import InvalidSelection
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs

log = structlog.get_logger(__name__)

Action = Literal["cancel", "retry", "reschedule"]
#: The states each action changes; a job in any other state is counted as not eligible. A running
#: job is asked to stop (core.engine.queries.request_cancel) and counted as "stopping".
ELIGIBLE: dict[str, tuple[JobStatus, ...]] = {
    "cancel": (*CANCELLABLE, JobStatus.RUNNING),
    "retry": WAITING,
    "reschedule": WAITING,
}
#: What each action did, as its count is named in the audit entry and the answer.
DONE = {"cancel": "cancelled", "retry": "retried", "reschedule": "rescheduled"}
#: Jobs changed per transaction (as the redrive's batches).
BATCH_SIZE = 500

#: Called after each batch with the jobs changed so far.
Progress = Callable[[int], object]


@dataclass(frozen=True, slots=True)
class JobSelection:
    """The jobs an action applies to: explicit ids, or a filter (exactly one), among ``filter``'s
    tenant's jobs, which is the caller's reach (JobFilter.tenant; None: every tenant's)."""

    ids: tuple[uuid.UUID, ...] | None
    filter: JobFilter

    def __post_init__(self) -> None:
        if self.ids is not None and not self.ids:
            raise InvalidSelection("ids must not be empty")

    @property
    def tenant(self) -> str | None:
        return self.filter.tenant

    def where(self) -> list[sa.ColumnElement[bool]]:
        if self.ids is not None:
            return [*filter_where(jobs, JobFilter(tenant=self.tenant)), any_id(self.ids)]
        return filter_where(jobs, self.filter)

    def as_json(self) -> dict[str, Any]:
        """The selection as the audit log stores it (the tenant has a column of its own)."""
        if self.ids is not None:
            return {"ids": [str(i) for i in self.ids]}
        shown = msgspec.to_builtins(self.filter)
        return {"filter": {k: v for k, v in shown.items() if v is not None and k != "tenant"}}


class BulkOutcome(msgspec.Struct, frozen=True):
    """What an action matched and did; POST /v1/jobs/bulk answers it as it is."""

    action: str
    #: Jobs in a state the action changes.
    matched: int
    #: Jobs changed; 0 on a dry run.
    changed: int
    #: Jobs selected in a state the action leaves alone, by state (dry run only).
    not_eligible: dict[str, int]
    #: None on a dry run, which writes no audit row.
    audit_id: uuid.UUID | None
    #: The first few eligible jobs as they are now (dry run) or after the change.
    preview: list[Job]


def dry_run(conn: Connection, action: Action, selection: JobSelection) -> BulkOutcome:
    """What ``action`` would change: the selected jobs by state, split into eligible and not.
    Changes nothing."""
    eligible = ELIGIBLE[action]
    by_state: dict[str, int] = dict(
        conn.execute(
            sa.select(jobs.c.status, sa.func.count()).where(*selection.where()).group_by(jobs.c.status)
        ).all()
    )
    matched = sum(n for state, n in by_state.items() if state in eligible)
    others = {state: n for state, n in sorted(by_state.items()) if state not in eligible}
    rows = conn.execute(
        newest_first(sa.select(jobs).where(*selection.where(), jobs.c.status.in_(eligible))).limit(
            PREVIEW_SIZE
        )
    )
    return BulkOutcome(action, matched, 0, others, None, [Job.from_row(r) for r in rows])


def _values(action: Action, run_at: datetime | None, by: uuid.UUID | None) -> dict[str, Any]:
    if action == "cancel":
        return cancel_values(by)
    now = utcnow()
    return {"run_at": now if action == "retry" else run_at, "updated_at": now}


def apply(
    settings: Settings,
    action: Action,
    selection: JobSelection,
    reason: str,
    actor: str,
    *,
    run_at: datetime | None = None,
    by: uuid.UUID | None = None,
    progress: Progress | None = None,
) -> BulkOutcome:
    """Do ``action`` to every eligible job of the selection, a batch a transaction, then write one
    audit row (also when stopped part-way, so what was done is on record). ``run_at``: the new due
    time of a reschedule (in UTC, within the horizon: the caller checks it). ``by``: the API key
    that asked, recorded on each cancelled job."""
    if not reason.strip():
        raise ValueError("a reason is required")
    if (action == "reschedule") != (run_at is not None):
        raise ValueError("a reschedule, and only a reschedule, takes run_at")
    eligible = ELIGIBLE[action]
    began = utcnow()
    last: tuple[datetime, uuid.UUID] | None = None
    matched = changed = stopping = 0
    shown: list[Job] = []
    try:
        while True:
            with transaction(settings) as conn:
                ids, running, last = _next_batch(conn, selection, eligible, began, last)
                if not ids:
                    break
                changed_jobs = _change(conn, ids, _values(action, run_at, by), action)
                if action == "cancel":
                    asked = [request_cancel(conn, i, selection.tenant, by) for i in running]
                    stopped = [j for j in asked if j is not None]
                    stopping += len(stopped)
                    changed_jobs += stopped
            matched += len(ids)
            changed += len(changed_jobs)
            room = PREVIEW_SIZE - len(shown)
            shown += changed_jobs[:room] if room > 0 else []
            if progress is not None:
                progress(changed)
            if len(ids) < BATCH_SIZE:
                break
    finally:
        selected = selection.as_json()
        if run_at is not None:
            selected["run_at"] = run_at.isoformat()
        with transaction(settings) as conn:
            audit_id = audit.record(
                conn,
                tenant=selection.tenant,
                actor=actor,
                action=f"jobs.{action}",
                selection=selected,
                reason=reason,
                counts={"matched": matched, DONE[action]: changed - stopping}
                | ({"stopping": stopping} if stopping else {}),
            )
    log.info(f"jobs_{DONE[action]}", matched=matched, changed=changed, actor=actor, audit_id=str(audit_id))
    return BulkOutcome(action, matched, changed, {}, audit_id, shown)


def _next_batch(
    conn: Connection,
    selection: JobSelection,
    eligible: Sequence[str],
    began: datetime,
    after: tuple[datetime, uuid.UUID] | None,
) -> tuple[list[uuid.UUID], list[uuid.UUID], tuple[datetime, uuid.UUID] | None]:
    """The next BATCH_SIZE eligible jobs past ``after``, newest first, those of them running, and the
    new position."""
    query = sa.select(jobs.c.id, jobs.c.created_at, jobs.c.status).where(
        *selection.where(), jobs.c.status.in_(eligible), jobs.c.created_at <= began
    )
    if after is not None:
        query = query.where(sa.tuple_(jobs.c.created_at, jobs.c.id) < sa.tuple_(*after))
    rows = conn.execute(newest_first(query).limit(BATCH_SIZE)).all()
    if not rows:
        return [], [], after
    running = [r.id for r in rows if r.status == JobStatus.RUNNING]
    return [r.id for r in rows], running, (rows[-1].created_at, rows[-1].id)


def _change(conn: Connection, ids: list[uuid.UUID], values: dict[str, Any], action: Action) -> list[Job]:
    """Change those of ``ids`` still in a state ``action`` changes at once (a running job, which a
    cancel asks to stop, aside) and not held by another transaction; the jobs, newest first."""
    states = CANCELLABLE if action == "cancel" else ELIGIBLE[action]
    free = (
        sa.select(jobs.c.id).where(any_id(ids), jobs.c.status.in_(states)).with_for_update(skip_locked=True)
    )
    rows = conn.execute(
        sa.update(jobs).where(jobs.c.id.in_(free.scalar_subquery())).values(**values).returning(*jobs.c)
    ).all()
    return [Job.from_row(r) for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]
