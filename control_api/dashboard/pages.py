"""Dashboard pages: the overview, a job, a workflow, schedules and the audit log. Each reads through the
same core functions as the API (core.engine.queues, core.engine.stats, core.engine.queries,
core.engine.workflows, core.engine.schedules, core.engine.audit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

import anyio
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.engine import Connection

from control_api.dashboard.chart import Unit, chart
from control_api.dashboard.render import page
from control_api.dashboard.session import FRAGMENT, PageRefused, session_reach
from core.engine import stats as job_stats
from core.engine.audit import get_entry, list_audit
from core.engine.jobs import FINAL, utcnow
from core.engine.queries import get_job, list_attempts
from core.engine.queues import QueueRow, queue_overview
from core.engine.schedules import list_schedules, update_schedule
from core.engine.workflows import WorkflowStep, get_workflow, workflow_of_job
from core.platform.db import snapshot, transaction
from core.platform.settings import Settings

T = TypeVar("T")
#: Rows per page of the schedules and the audit log.
PAGE_SIZE = 50
#: Columns of the overview that add up across types into the totals row.
SUMMED = ("queued", "delayed", "scheduled", "running", "retrying", "dead", "succeeded_1m", "failed_1m")


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking database work off the event loop."""
    return await anyio.to_thread.run_sync(fn, *args)


#: The overview chart's ranges: its points, and what a bar is.
RANGES: dict[str, tuple[Callable[[Connection, datetime], list[job_stats.MinutePoint]], Unit]] = {
    "1h": (job_stats.per_minute, "minute"),
    "24h": (job_stats.per_hour, "hour"),
    "30d": (job_stats.per_day, "day"),
}
Range = Literal["1h", "24h", "30d"]


def _overview(state: State, reach: str | None, span: Range = "1h") -> dict[str, Any]:
    """The queues as ``reach`` sees them (a tenant's, or every tenant's for None), and the chart of
    the farm's throughput over ``span``, which counts every tenant's jobs together: shown to admin
    sessions only, and only while they show every tenant."""
    settings: Settings = state.settings
    now = utcnow()
    job_stats.refresh(settings, now)
    points_of, unit = RANGES[span]
    with snapshot(settings) as conn:
        overview = queue_overview(
            conn, state.health_redis, settings.redis_namespace, now, settings.worker_dead_after_s, reach
        )
        points = points_of(conn, now) if reach is None else []
    totals = {name: sum(getattr(row, name) for row in overview.items) for name in SUMMED}
    # Ready is per queue: summing it per type would count a shared queue twice.
    ready = [q.ready for q in overview.queues]
    totals["ready"] = None if None in ready else sum(r or 0 for r in ready)
    return {"overview": overview, "chart": chart(points, unit), "totals": totals, "range": span}


def _queue_is_shared(rows: list[QueueRow]) -> set[str]:
    seen: dict[str, int] = {}
    for row in rows:
        seen[row.queue] = seen.get(row.queue, 0) + 1
    return {q for q, n in seen.items() if n > 1}


@get("/", name="dashboard_overview")
async def overview(request: Request[Any, Any, Any], state: State, range: FromQuery[Range] = "1h") -> Template:
    data = await run(_overview, state, session_reach(request), range)
    return page(request, "overview.html", shared=_queue_is_shared(data["overview"].items), **data)


@get("/overview/fragment", name="dashboard_overview_fragment", opt={FRAGMENT: True})
async def overview_fragment(
    request: Request[Any, Any, Any], state: State, range: FromQuery[Range] = "1h"
) -> Template:
    data = await run(_overview, state, session_reach(request), range)
    return page(request, "_overview.html", shared=_queue_is_shared(data["overview"].items), **data)


def _job(settings: Settings, job_id: uuid.UUID, reach: str | None) -> dict[str, Any]:
    with snapshot(settings) as conn:
        job = get_job(conn, job_id, reach)
        attempts = list_attempts(conn, job_id, reach)
        workflow_id = workflow_of_job(conn, job_id)
    return {"job": job, "attempts": attempts, "final": job.status in FINAL, "workflow_id": workflow_id}


@get("/jobs/{job_id:uuid}", name="dashboard_job")
async def job_page(request: Request[Any, Any, Any], state: State, job_id: FromPath[uuid.UUID]) -> Template:
    return page(request, "job.html", **await run(_job, state.settings, job_id, session_reach(request)))


@get("/jobs/{job_id:uuid}/fragment", name="dashboard_job_fragment", opt={FRAGMENT: True})
async def job_fragment(
    request: Request[Any, Any, Any], state: State, job_id: FromPath[uuid.UUID]
) -> Template:
    return page(request, "_job.html", **await run(_job, state.settings, job_id, session_reach(request)))


def _workflow(settings: Settings, workflow_id: uuid.UUID, reach: str | None) -> dict[str, Any]:
    """The workflow, its steps in columns by depth (a step to the right of every step it runs after)."""
    with snapshot(settings) as conn:
        workflow = get_workflow(conn, workflow_id, reach)
    columns: list[list[WorkflowStep]] = [[] for _ in range(1 + max(s.depth for s in workflow.steps))]
    for step in workflow.steps:
        columns[step.depth].append(step)
    return {"workflow": workflow, "columns": columns, "final": workflow.state in ("succeeded", "cancelled")}


@get("/workflows/{workflow_id:uuid}", name="dashboard_workflow")
async def workflow_page(
    request: Request[Any, Any, Any], state: State, workflow_id: FromPath[uuid.UUID]
) -> Template:
    data = await run(_workflow, state.settings, workflow_id, session_reach(request))
    return page(request, "workflow.html", **data)


Lister = Callable[[Connection, int, str | None, str | None], tuple[list[Any], str | None]]


def _paged(settings: Settings, lister: Lister, cursor: str | None, reach: str | None) -> dict[str, Any]:
    """One page of a list, newest first, and the cursor of the next: what ``reach`` sees."""
    with snapshot(settings) as conn:
        items, next_cursor = lister(conn, PAGE_SIZE, cursor, reach)
    return {"items": items, "next_cursor": next_cursor}


@get("/schedules", name="dashboard_schedules")
async def schedules(
    request: Request[Any, Any, Any], state: State, cursor: FromQuery[str | None] = None
) -> Template:
    data = await run(_paged, state.settings, list_schedules, cursor, session_reach(request))
    return page(request, "schedules.html", **data)


def _set_enabled(settings: Settings, schedule_id: uuid.UUID, enabled: bool, reach: str | None) -> None:
    with transaction(settings) as conn:
        update_schedule(conn, schedule_id, {"enabled": enabled}, reach)


@post("/schedules/{schedule_id:uuid}/enabled", name="dashboard_schedule_enabled")
async def set_enabled(
    request: Request[Any, Any, Any], state: State, schedule_id: FromPath[uuid.UUID]
) -> Redirect:
    form = await request.form()
    enabled = form.get("enabled")
    if enabled not in ("true", "false"):
        raise PageRefused(422, "Bad form", "enabled must be true or false.")
    await run(_set_enabled, state.settings, schedule_id, enabled == "true", session_reach(request))
    return Redirect("/dashboard/schedules", status_code=303)


@get("/audit", name="dashboard_audit")
async def audit(
    request: Request[Any, Any, Any], state: State, cursor: FromQuery[str | None] = None
) -> Template:
    return page(
        request, "audit.html", **await run(_paged, state.settings, list_audit, cursor, session_reach(request))
    )


def _action(settings: Settings, audit_id: uuid.UUID, reach: str | None) -> dict[str, Any]:
    with snapshot(settings) as conn:
        return {"entry": get_entry(conn, audit_id, reach)}


@get("/actions/{audit_id:uuid}", name="dashboard_action")
async def action_done(
    request: Request[Any, Any, Any], state: State, audit_id: FromPath[uuid.UUID]
) -> Template:
    """What a redrive or discard did, from its audit entry (where the confirm form lands)."""
    return page(
        request, "action.html", **await run(_action, state.settings, audit_id, session_reach(request))
    )
