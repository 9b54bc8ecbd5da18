"""/v1/dead-letters (list, redrive, discard) and /v1/audit, for keys with the `ops` scope.

A redrive or discard of thousands of jobs runs in a worker thread, batch by batch, so the API keeps
answering other requests meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromQuery, JSONBody, QueryParameter

from control_api.auth import OPS_READ, requires
from core.access.keys import ApiKey
from core.engine.audit import AuditEntry, list_audit
from core.engine.deadletters import (
    DeadFilter,
    Outcome,
    Selection,
    dry_run_discard,
    dry_run_redrive,
    list_dead,
)
from core.engine.jobs import Job
from core.engine.redrive import discard, redrive
from core.errors import InvalidInput
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size.")]
#: Explicit ids beyond this should be a filter; the cap keeps one request's body and statement sane.
MAX_IDS = 10_000
#: A reason must say something: at least one character that is not a space.
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]
Ids = Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=MAX_IDS)]

OPS = [requires("ops")]


class DiscardIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of ``ids`` and ``filter``; ``filter: {}`` selects every dead letter."""

    ids: Ids | None = None
    filter: DeadFilter | None = None
    reason: Reason
    dry_run: bool = False


class RedriveIn(DiscardIn, forbid_unknown_fields=True, kw_only=True):
    #: A JSON merge patch (RFC 7386) applied to each payload before it is queued again.
    payload_patch: dict[str, Any] | None = None


class RedriveOut(msgspec.Struct):
    matched: int
    redriven: int
    audit_id: uuid.UUID | None
    preview: list[Job]


class DiscardOut(msgspec.Struct):
    matched: int
    discarded: int
    audit_id: uuid.UUID | None
    preview: list[Job]


class DeadList(msgspec.Struct):
    items: list[Job]
    next_cursor: str | None


class AuditList(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None


def _selection(data: DiscardIn, key: ApiKey) -> Selection:
    """What the body selects, among the dead letters the key reaches (its tenant's, or all)."""
    if (data.ids is None) == (data.filter is None):
        raise InvalidInput(details=[{"field": "ids", "message": "give either ids or filter (not both)"}])
    ids = tuple(data.ids) if data.ids is not None else None
    return Selection(ids=ids, filter=data.filter, tenant=key.reach)


class DeadLettersController(Controller):
    path = "/v1/dead-letters"
    tags = ["dead letters"]

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="List dead letters, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        type: FromQuery[str | None] = None,
        error_code: FromQuery[str | None] = None,
        q: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> DeadList:
        naive = [name for name, value in (("since", since), ("until", until)) if value and not value.tzinfo]
        if naive:
            # Postgres would read such a time in its session's zone; make the caller say which.
            raise InvalidInput(
                details=[{"field": name, "message": "needs a time zone (e.g. Z or +01:00)"} for name in naive]
            )
        f = DeadFilter(type=type, error_code=error_code, q=q, since=since, until=until)
        with transaction(state.settings) as conn:
            items, next_cursor = list_dead(conn, f, limit, cursor, request.user.reach)
        return DeadList(items, next_cursor)

    @post("/redrive", guards=OPS, sync_to_thread=True, status_code=200, summary="Queue dead letters again")
    def redrive(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[RedriveIn]
    ) -> RedriveOut:
        selection = _selection(data, request.user)
        if data.dry_run:  # InvalidPayloads: 422 naming each job's bad fields
            with transaction(state.settings) as conn:
                out: Outcome = dry_run_redrive(conn, selection, data.payload_patch)
        else:
            out = redrive(
                state.settings,
                state.broker,
                selection,
                data.reason,
                request.user.name,
                payload_patch=data.payload_patch,
                by=request.user.id,
            )
        return RedriveOut(out.matched, out.changed, out.audit_id, out.preview)

    @post("/discard", guards=OPS, sync_to_thread=True, status_code=200, summary="Cancel dead letters")
    def discard(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[DiscardIn]
    ) -> DiscardOut:
        selection = _selection(data, request.user)
        if data.dry_run:
            with transaction(state.settings) as conn:
                out = dry_run_discard(conn, selection)
        else:
            out = discard(state.settings, selection, data.reason, request.user.name, by=request.user.id)
        return DiscardOut(out.matched, out.changed, out.audit_id, out.preview)


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["dead letters"]

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="Redrives and discards, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> AuditList:
        with transaction(state.settings) as conn:
            items, next_cursor = list_audit(conn, limit, cursor, request.user.reach)
        return AuditList(items, next_cursor)
