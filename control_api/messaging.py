"""/v1/opt-outs (who must not be messaged) and /v1/outbound-messages (what was sent, and resolving
sends whose outcome is unknown).

Both are the caller's tenant's: another tenant's opt-out or message is not found (404), as one that
never existed. An `admin` key reads every tenant's, and names another tenant's opt-out with
``?tenant=`` (its own tenant's otherwise)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import OPS_READ, requires
from control_api.readerview import all_shown, redactor_for, shown
from core.access.keys import ApiKey
from core.errors import Forbidden, InvalidInput, OptOutNotFound, OutboundMessageNotFound
from core.messaging import outbound
from core.messaging.optouts import (
    E164_PATTERN,
    OptOut,
    add_opt_out,
    e164,
    get_opt_out,
    list_opt_outs,
    remove_opt_out,
)
from core.messaging.outbound import OutboundMessage
from core.platform.crypto import mask_phone
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT
from core.platform.tenants import TENANT_PATTERN

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size.")]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
TenantName = Annotated[str, msgspec.Meta(pattern=f"^{TENANT_PATTERN}$", max_length=63)]
TenantQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=f"^{TENANT_PATTERN}$",
        max_length=63,
        description="The tenant whose opt-out it is (an admin key's choice); absent: the key's own.",
    ),
]


class OptOutIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: Annotated[str, msgspec.Meta(pattern=E164_PATTERN, description="E.164, e.g. +14155550100")]
    reason: Note | None = None
    #: The tenant whose messages the recipient refuses; absent: the key's own (only an admin key
    #: names another).
    tenant: TenantName | None = None


class OptOutList(msgspec.Struct):
    items: list[OptOut]
    next_cursor: str | None


class OutboundList(msgspec.Struct):
    items: list[OutboundMessage]
    next_cursor: str | None


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: What the human found out: the message reached WhatsApp (true) or it did not (false).
    sent: bool
    note: Note | None = None


def _named(key: ApiKey, tenant: str | None) -> str | None:
    """The tenant whose opt-out a key names: its own unless an admin key names another; None when
    the key does not reach the one named (answered as not found)."""
    target = tenant or key.tenant
    return target if key.reach is None or target == key.tenant else None


def _number(value: str) -> str:
    try:
        return e164(value)
    except ValueError as exc:
        raise InvalidInput(details=[{"field": "number", "message": str(exc)}]) from None


class OptOutsController(Controller):
    path = "/v1/opt-outs"
    tags = ["messaging"]

    @post(
        "/",
        guards=[requires("jobs:write")],
        sync_to_thread=True,
        summary="Record an opt-out",
        responses={200: ResponseSpec(OptOut, description="The number had opted out already")},
    )
    def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[OptOutIn]
    ) -> Response[OptOut]:
        tenant = _named(request.user, data.tenant)
        if tenant is None:
            raise Forbidden("only an admin key records an opt-out for another tenant")
        with transaction(state.settings) as conn:
            opt_out, created = add_opt_out(conn, data.to, "api", data.reason, tenant=tenant)
        return Response(opt_out, status_code=201 if created else 200)

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="List opt-outs, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
        tenant: TenantQuery = None,
    ) -> OptOutList:
        key: ApiKey = request.user
        reach = key.reach if tenant is None else _named(key, tenant)
        if tenant is not None and reach is None:
            return OptOutList([], None)  # another tenant's: nothing to see
        with transaction(state.settings) as conn:
            return OptOutList(*list_opt_outs(conn, limit, cursor, tenant=reach))

    @get(
        "/{number:str}",
        guards=[OPS_READ],
        sync_to_thread=True,
        summary="Whether a number opted out (found by its keyed hash)",
    )
    def read(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        number: FromPath[str],
        tenant: TenantQuery = None,
    ) -> OptOut:
        address = _number(number)
        target = _named(request.user, tenant)
        found = None
        if target is not None:
            with transaction(state.settings) as conn:
                found = get_opt_out(conn, address, tenant=target)
        if found is None:
            raise OptOutNotFound(f"{mask_phone(address)} has not opted out")
        return found

    @delete("/{number:str}", guards=[requires("ops")], sync_to_thread=True, summary="Remove an opt-out")
    def remove(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        number: FromPath[str],
        tenant: TenantQuery = None,
    ) -> None:
        address = _number(number)
        target = _named(request.user, tenant)
        with transaction(state.settings) as conn:
            if target is None or not remove_opt_out(conn, address, tenant=target):
                raise OptOutNotFound(f"{mask_phone(address)} has not opted out")


class OutboundMessagesController(Controller):
    path = "/v1/outbound-messages"
    tags = ["messaging"]

    @get("/", guards=[requires("jobs:read")], sync_to_thread=True, summary="Outbound messages, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        job_id: FromQuery[uuid.UUID | None] = None,
        to: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> OutboundList:
        number = _number(to) if to is not None else None
        with transaction(state.settings) as conn:
            items, next_cursor = outbound.list_outbound(
                conn,
                job_id=job_id,
                to=number,
                status=status,
                limit=limit,
                cursor=cursor,
                tenant=request.user.reach,
            )
        return OutboundList(all_shown(items, redactor_for(request)), next_cursor)

    @get(
        "/{outbound_id:uuid}",
        guards=[requires("jobs:read")],
        sync_to_thread=True,
        summary="An outbound message",
    )
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, outbound_id: FromPath[uuid.UUID]
    ) -> OutboundMessage:
        with transaction(state.settings) as conn:
            found = outbound.get(conn, outbound_id, request.user.reach)
        if found is None:
            raise OutboundMessageNotFound(f"no outbound message {outbound_id}")
        return shown(found, redactor_for(request))

    @post(
        "/{outbound_id:uuid}/resolve",
        guards=[requires("ops")],
        sync_to_thread=True,
        status_code=200,
        summary="Settle a send whose outcome is unknown",
    )
    def resolve(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        outbound_id: FromPath[uuid.UUID],
        data: JSONBody[ResolveIn],
    ) -> OutboundMessage:
        key: ApiKey = request.user
        with transaction(state.settings) as conn:  # NotResolvable: 409
            found = outbound.resolve(
                conn, outbound_id, sent=data.sent, actor=key.name, note=data.note, tenant=key.reach
            )
        if found is None:
            raise OutboundMessageNotFound(f"no outbound message {outbound_id}")
        return found
