"""Workflows: named steps, each an ordinary job that starts once the steps it runs ``after`` succeeded.

A workflow is a row in ``workflows`` and a row per step in ``workflow_steps``. The steps that run
after nothing are inserted as jobs with the workflow, in its transaction. The others wait as rows:
when a step's job succeeds, the transaction that records its success (core/engine/lifecycle.py and
batch_lifecycle.py) locks the workflow's row, renders each waiting step whose ``after`` steps have
all succeeded and inserts it as a job. The lock makes that exactly once: two steps finishing at the
same moment take turns, and the second sees the first's success; a step row moves from ``waiting``
to ``enqueued`` only once. A successor is published after the commit; if that publish is lost, the
sweeper publishes it as it does any queued job.

A step's payload may use the results of its ancestors (the steps it runs after, and theirs) with
``{{ step.result.path }}`` in string values (core/engine/templates.py). A path the result does not
hold makes that step's job dead at once with ``template_path_missing``.

``blocked`` is never stored: a waiting step is blocked while one of its ancestors' jobs is dead, so a
redrive of that job unblocks it, and it runs when the job succeeds. A cancel by business key cancels
the workflow's waiting steps with its jobs.

What a workflow may be, and the checks made before it is written: core/engine/workflow_spec.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.broker import Publication
from core.engine.job_types import get_job_type, open_payload, validate_payload
from core.engine.jobs import JobStatus, NewJob, insert_jobs, publication, time_ordered_ids, utcnow
from core.engine.templates import MissingPath, render
from core.engine.workflow_spec import NewWorkflow, StepSpec, step_order
from core.errors import JobyardError, WorkflowNotFound
from core.platform.tables import job_history, jobs, workflow_steps, workflows
from core.platform.tenants import reached

#: The error of a step whose template names a path its ancestor's result does not hold.
PATH_MISSING = "template_path_missing"
#: The error of a step whose rendered payload does not fit its type.
RENDERED_INVALID = "workflow_payload_invalid"


# -- creation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    workflow_id: uuid.UUID
    created: bool
    #: The messages of the first steps' jobs, to publish after the commit.
    publications: list[Publication] = field(default_factory=list)


def create(conn: Connection, wf: NewWorkflow) -> Created:
    """Insert the workflow, its steps, and the jobs of the steps that run after nothing, in the
    caller's transaction (``check_steps`` passed). A repeated idempotency key returns the first."""
    now = utcnow()
    (workflow_id,) = time_ordered_ids(1, now)
    inserted = conn.execute(
        pg_insert(workflows)
        .values(
            id=workflow_id,
            tenant=wf.tenant,
            business_key=wf.business_key,
            idempotency_key=wf.idempotency_key,
            created_by=wf.created_by,
            request_id=wf.request_id,
            state="running",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[workflows.c.tenant, workflows.c.idempotency_key],
            index_where=workflows.c.idempotency_key.isnot(None),
        )
        .returning(workflows.c.id)
    ).scalar()
    if inserted is None:
        first = conn.execute(
            sa.select(workflows.c.id).where(
                workflows.c.tenant == wf.tenant, workflows.c.idempotency_key == wf.idempotency_key
            )
        ).scalar_one()
        return Created(first, created=False)
    roots = [s for s in wf.steps if not s.after]
    enqueued = insert_jobs(
        conn,
        [_new_job(s, s.payload, wf) for s in roots],
    )
    job_ids = {s.name: e.job.id for s, e in zip(roots, enqueued, strict=True)}
    _link(conn, workflow_id, list(job_ids.values()))
    order = step_order({s.name: s.after for s in wf.steps}) or []
    position = {name: i for i, name in enumerate(order)}
    conn.execute(
        sa.insert(workflow_steps),
        [
            {
                "workflow_id": workflow_id,
                "name": s.name,
                "tenant": wf.tenant,
                "type": s.type,
                "payload": get_job_type(s.type).seal(s.payload) if s.after else {},
                "after": list(s.after),
                "options": {"priority": s.priority, "max_retries": s.max_retries},
                "position": position[s.name],
                "state": "enqueued" if s.name in job_ids else "waiting",
                "job_id": job_ids.get(s.name),
            }
            for s in wf.steps
        ],
    )
    pubs = [publication(e) for e in enqueued if e.message_id is not None]
    return Created(workflow_id, created=True, publications=pubs)


def _new_job(s: StepSpec, payload: dict[str, Any], wf: NewWorkflow | sa.Row[Any]) -> NewJob:
    """Step ``s``'s job with ``payload``, of the workflow ``wf`` (as asked for, or its row)."""
    return NewJob(
        type=s.type,
        payload=payload,
        business_key=wf.business_key,
        max_retries=s.max_retries,
        request_id=wf.request_id,
        tenant=wf.tenant,
        created_by=wf.created_by,
        priority=s.priority,
    )


def _link(conn: Connection, workflow_id: uuid.UUID, job_ids: list[uuid.UUID]) -> None:
    if job_ids:
        conn.execute(sa.update(jobs).where(jobs.c.id.in_(job_ids)).values(workflow_id=workflow_id))


# -- a step succeeded ---------------------------------------------------------------------------


def _steps_with_jobs(conn: Connection, workflow_id: uuid.UUID) -> list[sa.Row[Any]]:
    """The workflow's steps, each with its job's status and result (live or moved to the history)."""
    s, j, h = workflow_steps.c, jobs.alias("j"), job_history.alias("h")
    return list(
        conn.execute(
            sa.select(
                s.name,
                s.type,
                s.payload,
                s.after,
                s.options,
                s.position,
                s.state,
                s.job_id,
                sa.func.coalesce(j.c.status, h.c.status).label("job_status"),
                sa.func.coalesce(j.c.result, h.c.result).label("result"),
            )
            .select_from(
                workflow_steps.outerjoin(j, j.c.id == s.job_id).outerjoin(
                    h, sa.and_(h.c.id == s.job_id, j.c.id.is_(None))
                )
            )
            .where(s.workflow_id == workflow_id)
            .order_by(s.position)
        )
    )


def advance(conn: Connection, workflow_ids: Iterable[uuid.UUID]) -> list[Publication]:
    """In the transaction that recorded the success of steps of these workflows: insert as jobs the
    steps now ready, exactly once. Returns their messages, to publish after the commit."""
    pubs: list[Publication] = []
    # Sorted: two batches finishing steps of the same workflows lock them in the same order.
    for workflow_id in sorted(set(workflow_ids)):
        pubs.extend(_advance_one(conn, workflow_id))
    return pubs


def _rendered(step: sa.Row[Any], results: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """A waiting step's payload rendered from its ancestors' results and checked against its type,
    or the code and message of why it cannot run: a missing path, a payload that does not fit, a
    sealed field that does not open (a data key retired since). Never raises: the success of the
    step before it must not fail for this one."""
    job_type = get_job_type(step.type)
    try:
        rendered = render(open_payload(job_type, step.payload), results)
    except MissingPath as missing:
        return {}, (PATH_MISSING, str(missing))
    except JobyardError as exc:
        return {}, (exc.code, str(exc))
    payload, errors = validate_payload(job_type, rendered)
    if errors:
        found = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return {}, (RENDERED_INVALID, f"the rendered payload does not fit {step.type!r}: {found}")
    return payload, None


def _advance_one(conn: Connection, workflow_id: uuid.UUID) -> list[Publication]:
    wf = conn.execute(sa.select(workflows).where(workflows.c.id == workflow_id).with_for_update()).first()
    if wf is None or wf.state != "running":
        return []
    # Read after the lock: a step that succeeded in a transaction that held it is seen.
    steps = _steps_with_jobs(conn, workflow_id)
    results = {r.name: r.result for r in steps if r.job_status == JobStatus.SUCCEEDED}
    ready = [r for r in steps if r.state == "waiting" and all(a in results for a in r.after)]
    if not ready:
        if len(results) == len(steps):
            conn.execute(
                sa.update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(state="succeeded", updated_at=utcnow())
            )
        return []
    good: list[tuple[str, NewJob]] = []
    bad: list[tuple[str, NewJob, dict[str, Any]]] = []
    for r in ready:
        spec = StepSpec(r.name, r.type, {}, tuple(r.after), **r.options)
        payload, why = _rendered(r, results)
        if why is None:
            good.append((r.name, _new_job(spec, payload, wf)))
            continue
        # Its job is inserted dead, holding the payload as stored: a redrive's patch can mend it.
        code, message = why
        error = {"code": code, "message": f"step {r.name!r}: {message}"[:2000], "retryable": False}
        bad.append((r.name, _new_job(spec, r.payload, wf), error))
    enqueued = insert_jobs(conn, [nj for _, nj in good] + [nj for _, nj, _ in bad])
    names = [name for name, _ in good] + [name for name, _, _ in bad]
    job_ids = [e.job.id for e in enqueued]
    _link(conn, workflow_id, job_ids)
    now = utcnow()
    for (_, _, dead_error), e in zip(bad, enqueued[len(good) :], strict=True):
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == e.job.id)
            .values(
                status=JobStatus.DEAD, error=dead_error, finished_at=now, message_id=None, published_at=None
            )
        )
    for name, job_id in zip(names, job_ids, strict=True):
        conn.execute(
            sa.update(workflow_steps)
            .where(
                workflow_steps.c.workflow_id == workflow_id,
                workflow_steps.c.name == name,
                workflow_steps.c.state == "waiting",
            )
            .values(state="enqueued", job_id=job_id)
        )
    return [publication(e) for e in enqueued[: len(good)] if e.message_id is not None]


# -- cancel -------------------------------------------------------------------------------------


def lock_by_business_key(conn: Connection, business_key: str, tenant: str | None) -> list[uuid.UUID]:
    """Lock the running workflows of ``business_key`` before their jobs are cancelled: a step
    succeeding meanwhile waits, then finds its successors cancelled."""
    return list(
        conn.execute(
            sa.select(workflows.c.id)
            .where(
                workflows.c.business_key == business_key,
                workflows.c.state == "running",
                reached(workflows, tenant),
            )
            .order_by(workflows.c.id)
            .with_for_update()
        ).scalars()
    )


def cancel_waiting(conn: Connection, workflow_ids: list[uuid.UUID]) -> None:
    """Cancel the steps of these (locked) workflows that have no job yet, and the workflows."""
    if not workflow_ids:
        return
    conn.execute(
        sa.update(workflow_steps)
        .where(workflow_steps.c.workflow_id.in_(workflow_ids), workflow_steps.c.state == "waiting")
        .values(state="cancelled")
    )
    conn.execute(
        sa.update(workflows)
        .where(workflows.c.id.in_(workflow_ids))
        .values(state="cancelled", updated_at=utcnow())
    )


# -- reads --------------------------------------------------------------------------------------


class WorkflowStep(msgspec.Struct, kw_only=True):
    """A step as the API shows it."""

    name: str
    type: str
    after: list[str]
    #: The job's status once it has one (queued, running, succeeded, dead, ...); before: waiting,
    #: blocked (an ancestor is dead) or cancelled; pruned once its job is gone.
    state: str
    job_id: uuid.UUID | None
    #: Its column in the graph: 0 for the steps that run first, else one more than its deepest after.
    depth: int


class Workflow(msgspec.Struct, kw_only=True):
    """A workflow as the API shows it."""

    id: uuid.UUID
    tenant: str
    business_key: str | None
    idempotency_key: str | None
    #: running, succeeded, dead (a step is dead: its descendants are blocked) or cancelled.
    state: str
    created_at: datetime
    created_by: uuid.UUID | None
    steps: list[WorkflowStep]


def _step_states(steps: Sequence[sa.Row[Any]]) -> dict[str, str]:
    """Each step's state, in ``position`` order (each after those it runs after)."""
    states: dict[str, str] = {}
    for r in steps:
        if r.job_id is not None:
            states[r.name] = r.job_status or "pruned"
        elif r.state == "cancelled":
            states[r.name] = "cancelled"
        else:
            above = {states.get(a) for a in r.after}
            if above & {"cancelled"}:
                states[r.name] = "cancelled"
            elif above & {"dead", "blocked"}:
                states[r.name] = "blocked"
            else:
                states[r.name] = "waiting"
    return states


#: Step states that mean the workflow may still go on by itself.
_ACTIVE = {"waiting", "scheduled", "queued", "running", "retrying"}


def _shown_state(stored: str, states: Iterable[str]) -> str:
    if stored != "running":
        return stored
    seen = set(states)
    if {"dead", "blocked"} & seen:
        return "dead"
    # A step's job cancelled by id: once nothing else can run, the workflow is cancelled.
    return "cancelled" if "cancelled" in seen and not _ACTIVE & seen else "running"


def get_workflow(conn: Connection, workflow_id: uuid.UUID, tenant: str | None = None) -> Workflow:
    """The workflow and its steps' states; WorkflowNotFound when ``tenant`` does not reach it."""
    wf = conn.execute(
        sa.select(workflows).where(workflows.c.id == workflow_id, reached(workflows, tenant))
    ).first()
    if wf is None:
        raise WorkflowNotFound(f"no workflow {workflow_id}")
    steps = _steps_with_jobs(conn, workflow_id)
    states = _step_states(steps)
    depth: dict[str, int] = {}
    shown = []
    for r in steps:
        depth[r.name] = 1 + max((depth[a] for a in r.after), default=-1)
        shown.append(
            WorkflowStep(
                name=r.name,
                type=r.type,
                after=list(r.after),
                state=states[r.name],
                job_id=r.job_id,
                depth=depth[r.name],
            )
        )
    return Workflow(
        id=wf.id,
        tenant=wf.tenant,
        business_key=wf.business_key,
        idempotency_key=wf.idempotency_key,
        state=_shown_state(wf.state, states.values()),
        created_at=wf.created_at,
        created_by=wf.created_by,
        steps=shown,
    )


#: Workflows a list answers at most.
LIST_LIMIT = 100


def list_workflows(conn: Connection, business_key: str, tenant: str | None) -> list[Workflow]:
    """The workflows of ``business_key`` the caller reaches, newest first (at most LIST_LIMIT)."""
    ids = conn.execute(
        sa.select(workflows.c.id)
        .where(workflows.c.business_key == business_key, reached(workflows, tenant))
        .order_by(workflows.c.id.desc())
        .limit(LIST_LIMIT)
    ).scalars()
    return [get_workflow(conn, workflow_id) for workflow_id in ids]


def workflow_of_job(conn: Connection, job_id: uuid.UUID) -> uuid.UUID | None:
    """The workflow whose step ``job_id`` is, if any."""
    return conn.execute(
        sa.select(workflow_steps.c.workflow_id).where(workflow_steps.c.job_id == job_id)
    ).scalar()


# -- retention ----------------------------------------------------------------------------------


def jobs_gone() -> sa.ColumnElement[bool]:
    """Workflows none of whose steps' jobs is left, in ``jobs`` or the history: pruned with them."""
    s = workflow_steps.c
    return ~sa.exists().where(
        s.workflow_id == workflows.c.id,
        s.job_id.isnot(None),
        sa.or_(
            sa.exists().where(jobs.c.id == s.job_id),
            sa.exists().where(job_history.c.id == s.job_id),
        ),
    )
