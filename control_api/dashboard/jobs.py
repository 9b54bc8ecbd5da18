"""Dashboard jobs: every job in any state, found by filters and a cursor; actions on one job (cancel,
run now, reschedule) and on every job a filter matches, with the dead letters' dry run, required
reason and audit entry.

The reads are core.engine.queries' (the same function, and so the same indexes, as GET /v1/jobs);
the actions are core.engine.queries' for one job (as POST /v1/jobs/{id}/cancel and /reschedule) and
core.engine.bulk's for many (as POST /v1/jobs/bulk). The tenant is the session's reach: a tenant's
login sees its own jobs, an admin's every tenant's or the one chosen in the header.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from control_api.dashboard.deadletters import (
    FormError,
    QueryForm,
    check_form_tenant,
    form_dict,
    form_reason,
    form_time,
)
from control_api.dashboard.pages import run
from control_api.dashboard.render import page
from control_api.dashboard.session import PageRefused, session_reach
from core.access.sessions import Session
from core.engine import bulk
from core.engine.job_types import job_types
from core.engine.jobs import utcnow
from core.engine.queries import JobFilter, cancel_job, count_jobs, list_jobs, reschedule_job, retry_now
from core.engine.timebounds import bounded_utc
from core.errors import BadCursor
from core.platform.db import snapshot, transaction
from core.platform.settings import Settings
from core.platform.tables.engine import JOB_STATUSES

PAGE_SIZE = 50
#: The page counts the matching jobs up to this many, then says "more than".
COUNT_CAP = 10_000
_FILTER_FIELDS = ("status", "type", "queue", "business_key", "id", "created_after", "created_before", "q")
_SHORT = 200


class JobsForm(QueryForm, kw_only=True):
    """The filter as typed into the page: times are `datetime-local` values (UTC) or RFC 3339."""

    FIELDS = _FILTER_FIELDS
    status: str = ""
    type: str = ""
    queue: str = ""
    business_key: str = ""
    id: str = ""
    created_after: str = ""
    created_before: str = ""
    q: str = ""

    def to_filter(self, reach: str | None) -> JobFilter:
        if self.status and self.status not in JOB_STATUSES:
            raise FormError(f"State: {self.status[:40]!r} is not one of {', '.join(JOB_STATUSES)}.")
        too_long = [k for k in _FILTER_FIELDS if len(getattr(self, k)) > (1000 if k == "q" else _SHORT)]
        if too_long:
            raise FormError(f"Too long: {', '.join(too_long)}.")
        try:
            job_id = uuid.UUID(self.id.strip()) if self.id.strip() else None
        except ValueError:
            raise FormError(f"Id: {self.id[:40]!r} is not a job id (a UUID).") from None
        return JobFilter(
            status=self.status or None,
            type=self.type or None,
            queue=self.queue or None,
            business_key=self.business_key or None,
            id=job_id,
            created_after=form_time("created after", self.created_after),
            created_before=form_time("created before", self.created_before),
            q=self.q or None,
            tenant=reach,
        )


class BulkForm(JobsForm, kw_only=True):
    action: bulk.Action
    #: "selected": the checked ids; "matching": every job the filter matches.
    target: Literal["selected", "matching"] = "selected"
    ids: list[uuid.UUID] = msgspec.field(default_factory=list)
    reason: str = ""
    run_at: str = ""
    #: The tenant the page that sent the form showed ('' for every tenant).
    tenant: str | None = None

    def selection(self, reach: str | None) -> bulk.JobSelection:
        if self.target == "matching":
            f = self.to_filter(reach)
            if f.q:
                raise FormError("A text search lists jobs; to act on all matching, filter without text.")
            return bulk.JobSelection(ids=None, filter=f)
        if not self.ids:
            raise FormError("Select at least one job, or choose every job matching the filter.")
        return bulk.JobSelection(ids=tuple(self.ids), filter=JobFilter(tenant=reach))

    def checked_run_at(self) -> datetime | None:
        return checked_run_at(self.run_at) if self.action == "reschedule" else None


def checked_run_at(text: str) -> datetime:
    """A new due time from a form: within the horizon (core/engine/timebounds.py), else FormError."""
    value = form_time("run at", text)
    if value is None:
        raise FormError("A reschedule needs the new time (UTC).")
    run_at, error = bounded_utc(value, "run at", utcnow())
    if error is not None:
        raise FormError(f"{error.field[:1].upper()}{error.field[1:]} {error.message}.")
    assert run_at is not None
    return run_at


def _list(settings: Settings, form: JobsForm, cursor: str | None, reach: str | None) -> dict[str, Any]:
    f = form.to_filter(reach)
    try:
        with snapshot(settings) as conn:
            items, next_cursor = list_jobs(conn, f, PAGE_SIZE, cursor)
            matched = None if f.q else count_jobs(conn, f, COUNT_CAP + 1)
    except BadCursor:
        raise FormError("That page link is not valid any more; start from the first page.") from None
    types = sorted(job_types())
    queues = sorted({jt.queue_name for jt in job_types().values()})
    return {
        "items": items,
        "next_cursor": next_cursor,
        "matched": matched,
        "count_cap": COUNT_CAP,
        "types": types,
        "queues": queues,
        "statuses": JOB_STATUSES,
    }


@get("/jobs", name="dashboard_jobs")
async def jobs_page(
    request: Request[Any, Any, Any],
    state: State,
    status: FromQuery[str] = "",
    type: FromQuery[str] = "",
    queue: FromQuery[str] = "",
    business_key: FromQuery[str] = "",
    id: FromQuery[str] = "",
    created_after: FromQuery[str] = "",
    created_before: FromQuery[str] = "",
    q: FromQuery[str] = "",
    cursor: FromQuery[str | None] = None,
) -> Template:
    form = JobsForm(
        status=status,
        type=type,
        queue=queue,
        business_key=business_key,
        id=id,
        created_after=created_after,
        created_before=created_before,
        q=q,
    )
    try:
        data = await run(_list, state.settings, form, cursor, session_reach(request))
    except FormError as exc:
        data = {"items": [], "next_cursor": None, "matched": 0, "count_cap": COUNT_CAP, "error": str(exc)}
        data |= {"types": [], "queues": [], "statuses": JOB_STATUSES}
    return page(request, "jobs.html", filter=form, **data)


async def _bulk_form(request: Request[Any, Any, Any]) -> BulkForm:
    try:
        form = msgspec.convert(form_dict(await request.form()), BulkForm, strict=False)
    except msgspec.ValidationError as exc:
        raise PageRefused(422, "Bad form", f"The form is not valid: {exc}") from None
    check_form_tenant(form.tenant, session_reach(request), "the jobs")
    return form


def _preview(settings: Settings, form: BulkForm, reach: str | None) -> dict[str, Any]:
    selection, reason, run_at = form.selection(reach), form_reason(form.reason), form.checked_run_at()
    with snapshot(settings) as conn:
        outcome = bulk.dry_run(conn, form.action, selection)
    return {"outcome": outcome, "reason": reason, "run_at": run_at}


@post("/jobs/preview", name="dashboard_jobs_preview")
async def preview(request: Request[Any, Any, Any], state: State) -> Template:
    """The dry run: how many jobs the action would change, how many it leaves (by state), the first."""
    form = await _bulk_form(request)
    try:
        data = await run(_preview, state.settings, form, session_reach(request))
    except FormError as exc:
        return page(request, "jobs_preview.html", 422, form=form, error=str(exc))
    return page(request, "jobs_preview.html", form=form, **data)


def _apply(settings: Settings, form: BulkForm, session: Session, reach: str | None) -> bulk.BulkOutcome:
    selection, reason, run_at = form.selection(reach), form_reason(form.reason), form.checked_run_at()
    return bulk.apply(
        settings, form.action, selection, reason, session.key_name, run_at=run_at, by=session.key_id
    )


@post("/jobs/apply", name="dashboard_jobs_apply")
async def apply(request: Request[Any, Any, Any], state: State) -> Template | Redirect:
    """The confirmed action; lands on its audit entry."""
    form = await _bulk_form(request)
    session = request.state.dashboard_session
    try:
        outcome = await run(_apply, state.settings, form, session, session_reach(request))
    except FormError as exc:
        return page(request, "jobs_preview.html", 422, form=form, error=str(exc))
    return Redirect(f"/dashboard/actions/{outcome.audit_id}", status_code=303)


def _act(
    settings: Settings, job_id: uuid.UUID, action: str, run_at: str, session: Session, reach: str | None
) -> None:
    with transaction(settings) as conn:
        if action == "cancel":
            cancel_job(conn, job_id, reach, by=session.key_id)
        elif action == "retry":
            retry_now(conn, job_id, reach)
        else:
            reschedule_job(conn, job_id, checked_run_at(run_at), reach)


@post("/jobs/{job_id:uuid}/act", name="dashboard_job_act")
async def act(request: Request[Any, Any, Any], state: State, job_id: FromPath[uuid.UUID]) -> Redirect:
    """One job: cancel, run now (a scheduled or retrying job) or reschedule; back to its page. A job
    in a state the action does not apply to is answered 409, as the API answers."""
    form = await request.form()
    action, run_at = form.get("action"), form.get("run_at") or ""
    if action not in ("cancel", "retry", "reschedule") or not isinstance(run_at, str):
        raise PageRefused(422, "Bad form", "action must be cancel, retry or reschedule.")
    try:
        await run(
            _act,
            state.settings,
            job_id,
            action,
            run_at,
            request.state.dashboard_session,
            session_reach(request),
        )
    except FormError as exc:
        raise PageRefused(422, "Bad form", str(exc)) from None
    return Redirect(f"/dashboard/jobs/{job_id}", status_code=303)
