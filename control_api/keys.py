"""/v1/keys: API keys for keys with the `ops` scope: create (the secret is shown once), list, read,
rotate (a new secret; the old one works for a grace period) and revoke.

An ops key manages its own tenant's keys; another tenant's key is not found (404). Only an `admin`
key makes keys for another tenant, or keys that hold `admin` themselves."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import OPS_READ, requires
from core.access.keys import ApiKey, create_key, get_key, page_keys, revoke_key, rotate_key
from core.engine.jobs import utcnow
from core.errors import Forbidden
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT
from core.platform.tenants import ADMIN_SCOPE, TENANT_PATTERN

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size.")]
Scope = Literal["jobs:write", "jobs:read", "ops", "admin"]
#: Ten years, as for job delays: longer is a unit mistake.
MAX_SECONDS = 10 * 365 * 86400
Seconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_SECONDS)]
RatePerS = Annotated[
    float, msgspec.Meta(ge=0, le=1_000_000, description="Requests per second; 0: unlimited.")
]
OPS = [requires("ops")]


class KeyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=4)]
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_SECONDS)] | None = None
    #: This key's own rate; absent: JOBYARD_RATE_LIMIT_PER_S.
    rate_limit_per_s: RatePerS | None = None
    #: The tenant the key belongs to; absent: the creating key's own.
    tenant: Annotated[str, msgspec.Meta(pattern=f"^{TENANT_PATTERN}$", max_length=63)] | None = None


class RotateIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: How long the old value keeps working; absent: JOBYARD_KEY_ROTATION_GRACE.
    grace_seconds: Seconds | None = None


class NewKeyOut(msgspec.Struct, kw_only=True):
    key: ApiKey
    #: The key itself: shown this once, stored only as a hash.
    secret: str


class RotatedOut(NewKeyOut, kw_only=True):
    #: The rotated key, now expiring at the end of the grace period.
    previous: ApiKey


class KeyList(msgspec.Struct):
    items: list[ApiKey]
    next_cursor: str | None


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post("/", guards=OPS, sync_to_thread=True, summary="Create an API key (its secret is shown once)")
    def create(
        self, request: Request[ApiKey, None, State], state: State, data: JSONBody[KeyIn]
    ) -> Response[NewKeyOut]:
        caller = request.user
        tenant = data.tenant or caller.tenant
        if caller.reach is not None and (tenant != caller.tenant or ADMIN_SCOPE in data.scopes):
            raise Forbidden("only an admin key makes keys for another tenant, or keys that hold admin")
        expires: datetime | None = None
        if data.expires_in_seconds is not None:
            expires = utcnow() + timedelta(seconds=data.expires_in_seconds)
        with transaction(state.settings) as conn:
            key, secret = create_key(
                conn, data.name, data.scopes, expires, data.rate_limit_per_s, tenant=tenant
            )
        return Response(NewKeyOut(key=key, secret=secret), status_code=201)

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="List API keys, newest first (prefixes only)")
    def list(
        self,
        request: Request[ApiKey, None, State],
        state: State,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> KeyList:
        with transaction(state.settings) as conn:
            return KeyList(*page_keys(conn, limit, cursor, request.user.reach))

    @get("/{key_id:uuid}", guards=[OPS_READ], sync_to_thread=True, summary="An API key")
    def read(
        self, request: Request[ApiKey, None, State], state: State, key_id: FromPath[uuid.UUID]
    ) -> ApiKey:
        with transaction(state.settings) as conn:
            return get_key(conn, key_id, request.user.reach)

    @post(
        "/{key_id:uuid}/rotate",
        guards=OPS,
        sync_to_thread=True,
        summary="Replace a key; the old value keeps working for a grace period",
    )
    def rotate(
        self,
        request: Request[ApiKey, None, State],
        state: State,
        key_id: FromPath[uuid.UUID],
        data: JSONBody[RotateIn | None] = None,
    ) -> Response[RotatedOut]:
        grace = state.settings.key_rotation_grace_s
        if data is not None and data.grace_seconds is not None:
            grace = data.grace_seconds
        with transaction(state.settings) as conn:
            new, secret, old = rotate_key(conn, key_id, grace, request.user.reach)
        return Response(RotatedOut(key=new, secret=secret, previous=old), status_code=201)

    @post("/{key_id:uuid}/revoke", guards=OPS, sync_to_thread=True, status_code=200, summary="Revoke a key")
    def revoke(
        self, request: Request[ApiKey, None, State], state: State, key_id: FromPath[uuid.UUID]
    ) -> ApiKey:
        with transaction(state.settings) as conn:
            revoke_key(conn, str(key_id), request.user.reach)
            return get_key(conn, key_id, request.user.reach)
