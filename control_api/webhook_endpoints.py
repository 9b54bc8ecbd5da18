"""/v1/webhook-endpoints and /v1/webhook-deliveries: where a tenant's events are delivered, signed.

A key holding ``jobs:write`` manages its own tenant's endpoints; ``ops`` reads them and their
delivery log, and redrives dead deliveries (as ``jobs:write`` may for its own tenant). An endpoint's
secret is in the answer that made it (201) or rotated it, and never again. The sending is the
scheduler's (core/events/delivery.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import requires, requires_any
from core.access.keys import ApiKey
from core.errors import InvalidInput
from core.events.deliveries import (
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    RedriveResult,
    list_deliveries,
    redrive,
)
from core.events.endpoints import (
    Endpoint,
    create_endpoint,
    delete_endpoint,
    get_endpoint,
    list_endpoints,
    rotate_secret,
    update_endpoint,
)
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size.")]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Events = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(min_length=1, max_length=16)
]
Types = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]], msgspec.Meta(max_length=100)
]
Description = Annotated[str, msgspec.Meta(max_length=500)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=r"\S")]
#: Explicit ids beyond this should be a filter, as for dead letters.
MAX_IDS = 10_000
Ids = Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1, max_length=MAX_IDS)]
#: A rotation's grace: at most a month.
Grace = Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)]

WRITE = [requires("jobs:write")]
READ = [requires_any("jobs:write", "ops")]
#: What an `ops:read` key may read too.
LOOK = [requires_any("jobs:write", "ops", "ops:read")]


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Url
    #: Which events: job.succeeded, job.dead, job.retrying, job.cancelled, message.status, unread.changed.
    events: Events
    #: Job types whose job events it gets; null or absent: every type.
    types: Types | None = None
    description: Description | None = None


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the fields given change; ``enabled: true`` brings back a disabled endpoint."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    types: Types | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class RotateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Seconds the current secret keeps signing beside the new one; absent: JOBYARD_WEBHOOK_SECRET_GRACE_S.
    grace_s: Grace | None = None


class EndpointWithSecret(msgspec.Struct):
    endpoint: Endpoint
    #: ``whsec_...``: verify deliveries with it (any Standard Webhooks library). Shown this once.
    secret: str


class EndpointList(msgspec.Struct):
    items: list[Endpoint]
    next_cursor: str | None


class DeliveryList(msgspec.Struct):
    items: list[Delivery]
    next_cursor: str | None


class RedriveDeliveriesIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of ``ids`` and ``filter``; ``filter: {}`` selects every dead delivery reached."""

    ids: Ids | None = None
    filter: DeliveryFilter | None = None
    reason: Reason
    dry_run: bool = False


class WebhookEndpointsController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]

    @post("/", guards=WRITE, sync_to_thread=True, summary="Register a webhook endpoint")
    def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[EndpointIn]
    ) -> Response[EndpointWithSecret]:
        key = request.user
        with transaction(state.settings) as conn:
            endpoint, secret = create_endpoint(
                conn,
                state.settings,
                tenant=key.tenant,
                url=data.url,
                events=data.events,
                types=data.types,
                description=data.description,
                created_by=key.id,
            )
        return Response(EndpointWithSecret(endpoint, secret), status_code=201)

    @get("/", guards=LOOK, sync_to_thread=True, summary="List webhook endpoints, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> EndpointList:
        with transaction(state.settings) as conn:
            return EndpointList(*list_endpoints(conn, request.user.reach, limit, cursor))

    @get("/{endpoint_id:uuid}", guards=LOOK, sync_to_thread=True, summary="Get a webhook endpoint")
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> Endpoint:
        with transaction(state.settings) as conn:
            return get_endpoint(conn, endpoint_id, request.user.reach)

    @patch(
        "/{endpoint_id:uuid}", guards=WRITE, sync_to_thread=True, summary="Change or re-enable an endpoint"
    )
    def update(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[EndpointPatch],
    ) -> Endpoint:
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        with transaction(state.settings) as conn:
            return update_endpoint(conn, state.settings, endpoint_id, request.user.reach, changes)

    @post(
        "/{endpoint_id:uuid}/rotate-secret",
        guards=WRITE,
        sync_to_thread=True,
        status_code=200,
        summary="Rotate an endpoint's signing secret",
    )
    def rotate(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        endpoint_id: FromPath[uuid.UUID],
        data: JSONBody[RotateIn],
    ) -> EndpointWithSecret:
        grace = state.settings.webhook_secret_grace_s if data.grace_s is None else data.grace_s
        with transaction(state.settings) as conn:
            endpoint, secret = rotate_secret(conn, endpoint_id, request.user.reach, grace)
        return EndpointWithSecret(endpoint, secret)

    @delete("/{endpoint_id:uuid}", guards=WRITE, sync_to_thread=True, summary="Remove a webhook endpoint")
    def remove(
        self, request: Request[ApiKey, Any, Any], state: State, endpoint_id: FromPath[uuid.UUID]
    ) -> None:
        with transaction(state.settings) as conn:
            delete_endpoint(conn, endpoint_id, request.user.reach)


class WebhookDeliveriesController(Controller):
    path = "/v1/webhook-deliveries"
    tags = ["webhooks"]

    @get("/", guards=LOOK, sync_to_thread=True, summary="The delivery log, newest first")
    def list(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        endpoint: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[DeliveryStatus | None] = None,
        type: FromQuery[str | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> DeliveryList:
        f = DeliveryFilter(endpoint=endpoint, status=status, type=type)
        with transaction(state.settings) as conn:
            return DeliveryList(*list_deliveries(conn, f, request.user.reach, limit, cursor))

    @post("/redrive", guards=READ, sync_to_thread=True, status_code=200, summary="Send dead deliveries again")
    def redrive(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[RedriveDeliveriesIn]
    ) -> RedriveResult:
        if (data.ids is None) == (data.filter is None):
            raise InvalidInput(details=[{"field": "ids", "message": "give either ids or filter (not both)"}])
        key = request.user
        with transaction(state.settings) as conn:
            return redrive(
                conn,
                ids=data.ids,
                f=data.filter,
                tenant=key.reach,
                reason=data.reason,
                dry_run=data.dry_run,
                actor=key.name,
                key_id=key.id,
            )
