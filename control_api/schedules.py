"""/v1/schedules (recurring jobs) and /v1/sequences (jobs at offsets from an anchor time)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import OPS_READ, requires, requires_any
from control_api.jobs import enqueue_checked
from control_api.request_id import request_id_of
from control_api.schemas import Priority, SequenceIn, SequenceOut
from core.access.keys import ApiKey
from core.engine.lanes import DEFAULT_PRIORITY
from core.engine.schedules import (
    Schedule,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    update_schedule,
)
from core.errors import InvalidInput
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT

Timezone = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Every = Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)]
Cron = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ScheduleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    payload: dict[str, Any]
    every_seconds: Every | None = None
    cron: Cron | None = None
    timezone: Timezone = "UTC"
    start_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    enabled: bool = True
    business_key: Key | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=50)] | None = None
    priority: Priority = DEFAULT_PRIORITY


class SchedulePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    payload: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    every_seconds: Every | msgspec.UnsetType | None = msgspec.UNSET
    cron: Cron | msgspec.UnsetType | None = msgspec.UNSET
    timezone: Timezone | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    business_key: Key | msgspec.UnsetType | None = msgspec.UNSET
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=50)] | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET


class ScheduleList(msgspec.Struct):
    items: list[Schedule]
    next_cursor: str | None


class SchedulesController(Controller):
    path = "/v1/schedules"
    tags = ["schedules"]

    @post("/", guards=[requires_any("ops", "jobs:write")], sync_to_thread=True, summary="Create a schedule")
    def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[ScheduleIn]
    ) -> Response[Schedule]:
        key = request.user
        with transaction(state.settings) as conn:
            created = create_schedule(conn, msgspec.structs.asdict(data), key.tenant, key.id)
        return Response(created, status_code=201)

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="List schedules")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> ScheduleList:
        with transaction(state.settings) as conn:
            return ScheduleList(*list_schedules(conn, limit, cursor, request.user.reach))

    @get("/{schedule_id:uuid}", guards=[OPS_READ], sync_to_thread=True)
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, schedule_id: FromPath[uuid.UUID]
    ) -> Schedule:
        with transaction(state.settings) as conn:
            return get_schedule(conn, schedule_id, tenant=request.user.reach)

    @patch("/{schedule_id:uuid}", guards=[requires("ops")], sync_to_thread=True)
    def update(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        schedule_id: FromPath[uuid.UUID],
        data: JSONBody[SchedulePatch],
    ) -> Schedule:
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        with transaction(state.settings) as conn:
            return update_schedule(conn, schedule_id, changes, request.user.reach)

    @delete("/{schedule_id:uuid}", guards=[requires("ops")], sync_to_thread=True)
    def remove(
        self, request: Request[ApiKey, Any, Any], state: State, schedule_id: FromPath[uuid.UUID]
    ) -> None:
        with transaction(state.settings) as conn:
            delete_schedule(conn, schedule_id, request.user.reach)


class SequencesController(Controller):
    path = "/v1/sequences"
    tags = ["schedules"]

    @post("/", guards=[requires("jobs:write")], summary="Create a sequence of jobs")
    async def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[SequenceIn]
    ) -> Response[SequenceOut]:
        job_ins, errors = data.to_job_ins()
        if errors:
            raise InvalidInput(details=[e.as_dict() for e in errors])
        results = await enqueue_checked(
            state, job_ins, request_id_of(request.scope), prefix="steps", key=request.user
        )
        return Response(SequenceOut(data.business_key, [r.job for r in results]), status_code=201)
