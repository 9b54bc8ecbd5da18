"""POST /v1/jobs/bulk: cancel, run now or reschedule many jobs in any state, for keys with `ops`.

The contract of POST /v1/dead-letters/redrive: ``ids`` or ``filter``, ``dry_run``, a required
``reason``, one audit entry. The work is core.engine.bulk's, in batches in a worker thread, so the API
keeps answering other requests meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from control_api.auth import requires
from control_api.deadletters import Ids, Reason
from core.access.keys import ApiKey
from core.engine import bulk
from core.engine.jobs import JobStatus, utcnow
from core.engine.queries import JobFilter
from core.engine.timebounds import bounded_utc
from core.errors import InvalidInput
from core.platform.db import transaction

Short = Annotated[str, msgspec.Meta(max_length=200)]


class JobsFilterIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which jobs: every given field must match (the fields of GET /v1/jobs, and queue)."""

    type: Short | None = None
    status: JobStatus | None = None
    queue: Short | None = None
    business_key: Short | None = None
    created_after: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    created_before: Annotated[datetime, msgspec.Meta(tz=True)] | None = None

    def to_filter(self, reach: str | None) -> JobFilter:
        return JobFilter(
            type=self.type,
            status=self.status.value if self.status else None,
            queue=self.queue,
            business_key=self.business_key,
            created_after=self.created_after,
            created_before=self.created_before,
            tenant=reach,
        )


class BulkIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of ``ids`` and ``filter``; ``filter: {}`` selects every job the key reaches."""

    action: bulk.Action
    ids: Ids | None = None
    filter: JobsFilterIn | None = None
    reason: Reason
    dry_run: bool = False
    #: The new due time of a reschedule (within ten years of now).
    run_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None

    def selection(self, reach: str | None) -> bulk.JobSelection:
        if (self.ids is None) == (self.filter is None):
            raise InvalidInput(details=[{"field": "ids", "message": "give either ids or filter (not both)"}])
        f = self.filter.to_filter(reach) if self.filter is not None else JobFilter(tenant=reach)
        return bulk.JobSelection(ids=tuple(self.ids) if self.ids is not None else None, filter=f)

    def checked_run_at(self) -> datetime | None:
        if self.action != "reschedule":
            if self.run_at is not None:
                raise InvalidInput(details=[{"field": "run_at", "message": "only a reschedule takes run_at"}])
            return None
        if self.run_at is None:
            raise InvalidInput(details=[{"field": "run_at", "message": "a reschedule needs run_at"}])
        run_at, error = bounded_utc(self.run_at, "run_at", utcnow())
        if error is not None:
            raise InvalidInput(details=[error.as_dict()])
        return run_at


class JobsBulkController(Controller):
    path = "/v1/jobs/bulk"
    tags = ["jobs"]

    @post(
        "/",
        guards=[requires("ops")],
        sync_to_thread=True,
        status_code=200,
        summary="Cancel, run now or reschedule many jobs",
    )
    def act(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[BulkIn]
    ) -> bulk.BulkOutcome:
        key = request.user
        selection = data.selection(key.reach)
        run_at = data.checked_run_at()
        if data.dry_run:
            with transaction(state.settings) as conn:
                return bulk.dry_run(conn, data.action, selection)
        return bulk.apply(
            state.settings, data.action, selection, data.reason, key.name, run_at=run_at, by=key.id
        )
