"""A tenant's webhook endpoints: where its events are delivered, and the secret that signs them.

The secret is made here, shown once (in the answer that created or rotated it) and kept sealed with
the data key. An endpoint's URL must pass the address guard that scraping uses: a host resolving to
a private, loopback or otherwise non-public address is refused unless JOBYARD_WEBHOOK_ALLOW_HOSTS
names it. The check runs here, to answer a bad URL at once, and again at every delivery (the
sender's client connects only to checked addresses), so a name that later resolves elsewhere
reaches nothing it should not.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import AddressRefused, InvalidInput, NotResolved, WebhookEndpointNotFound
from core.events.signing import new_secret
from core.platform.crypto import data_cipher
from core.platform.netguard import AllowList, checked_addresses_sync
from core.platform.pagination import page, split_page
from core.platform.settings import Settings
from core.platform.tables import EVENT_TYPES, webhook_endpoints
from core.platform.tenants import reached

MAX_URL_LENGTH = 2048


class Endpoint(msgspec.Struct, kw_only=True):
    """A webhook endpoint as the API shows it (never its secret)."""

    id: uuid.UUID
    tenant: str
    url: str
    events: list[str]
    #: Job types whose job events it gets; null: every type.
    types: list[str] | None
    description: str | None
    enabled: bool
    #: Why and when it was disabled (by the farm after failing too long, or by a caller).
    disabled_reason: str | None
    disabled_at: datetime | None
    #: Since when every delivery try failed; null when the last one succeeded.
    failing_since: datetime | None
    #: Until when the secret before the last rotation signs as well.
    previous_secret_until: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Endpoint:
        m = row._mapping
        return cls(
            id=m["id"],
            tenant=m["tenant"],
            url=m["url"],
            events=list(m["events"]),
            types=None if m["types"] is None else list(m["types"]),
            description=m["description"],
            enabled=m["enabled"],
            disabled_reason=m["disabled_reason"],
            disabled_at=m["disabled_at"],
            failing_since=m["failing_since"],
            previous_secret_until=m["previous_until"],
            created_by=m["created_by"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


def secret_context(endpoint_id: uuid.UUID) -> str:
    """What a sealed secret is bound to: it opens only as this endpoint's."""
    return f"webhook_endpoints.secret:{endpoint_id}"


def checked_events(names: Sequence[str]) -> list[str]:
    unknown = sorted(set(names) - set(EVENT_TYPES))
    if unknown or not names:
        raise InvalidInput(
            details=[
                {
                    "field": "events",
                    "message": f"unknown events {unknown}; choose from {', '.join(EVENT_TYPES)}",
                }
            ]
            if unknown
            else [{"field": "events", "message": "name at least one event"}]
        )
    return sorted(set(names))


def checked_url(url: str, settings: Settings) -> str:
    """``url`` if deliveries may go there; InvalidInput (code ``webhook_url_refused``) otherwise."""

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(why, code="webhook_url_refused", details=[{"field": "url", "message": why}])

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"a URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise refuse(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse("an http or https URL with a host")
    if parts.username or parts.password:
        raise refuse("no user or password in the URL: the signature authenticates the farm")
    if parts.fragment:
        raise refuse("no #fragment: it is never sent")
    try:
        checked_addresses_sync(parts.hostname, port, AllowList.parse(settings.webhook_allow_hosts))
    except AddressRefused as exc:
        raise refuse(f"{exc} (JOBYARD_WEBHOOK_ALLOW_HOSTS allows such a host)") from None
    except NotResolved as exc:
        raise refuse(str(exc)) from None
    return url


def create_endpoint(
    conn: Connection,
    settings: Settings,
    *,
    tenant: str,
    url: str,
    events: Sequence[str],
    types: Sequence[str] | None,
    description: str | None,
    created_by: uuid.UUID | None,
) -> tuple[Endpoint, str]:
    """The new endpoint and its secret, in clear for the only time."""
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    ring = data_cipher()
    row = conn.execute(
        sa.insert(webhook_endpoints)
        .values(
            id=endpoint_id,
            tenant=tenant,
            url=checked_url(url, settings),
            events=checked_events(events),
            types=None if types is None else sorted(set(types)),
            description=description,
            secret_sealed=ring.seal(secret, secret_context(endpoint_id)),
            key_id=ring.key_id,
            created_by=created_by,
        )
        .returning(webhook_endpoints)
    ).one()
    return Endpoint.from_row(row), secret


def _row(conn: Connection, endpoint_id: uuid.UUID, tenant: str | None, *, lock: bool = False) -> Any:
    query = sa.select(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id, reached(webhook_endpoints, tenant)
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise WebhookEndpointNotFound(f"no webhook endpoint {endpoint_id}")
    return row


def get_endpoint(conn: Connection, endpoint_id: uuid.UUID, tenant: str | None) -> Endpoint:
    return Endpoint.from_row(_row(conn, endpoint_id, tenant))


def list_endpoints(
    conn: Connection, tenant: str | None, limit: int, cursor: str | None
) -> tuple[list[Endpoint], str | None]:
    query = sa.select(webhook_endpoints).where(reached(webhook_endpoints, tenant))
    rows = conn.execute(
        page(query, webhook_endpoints.c.created_at, webhook_endpoints.c.id, limit, cursor)
    ).all()
    items, next_cursor = split_page(rows, limit)
    return [Endpoint.from_row(r) for r in items], next_cursor


def update_endpoint(
    conn: Connection, settings: Settings, endpoint_id: uuid.UUID, tenant: str | None, changes: dict[str, Any]
) -> Endpoint:
    """Change the url, events, types, description or enabled of an endpoint. Enabling one clears why
    it was disabled and its failing streak: its waiting deliveries go out again."""
    _row(conn, endpoint_id, tenant, lock=True)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if "url" in changes:
        values["url"] = checked_url(changes["url"], settings)
    if "events" in changes:
        values["events"] = checked_events(changes["events"])
    if "types" in changes:
        values["types"] = None if changes["types"] is None else sorted(set(changes["types"]))
    if "description" in changes:
        values["description"] = changes["description"]
    if "enabled" in changes:
        enabled = bool(changes["enabled"])
        values["enabled"] = enabled
        values["disabled_reason"] = None if enabled else "disabled by a caller"
        values["disabled_at"] = None if enabled else utcnow()
        if enabled:
            values["failing_since"] = None
    row = conn.execute(
        sa.update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(**values)
        .returning(webhook_endpoints)
    ).one()
    return Endpoint.from_row(row)


def rotate_secret(
    conn: Connection, endpoint_id: uuid.UUID, tenant: str | None, grace_s: float
) -> tuple[Endpoint, str]:
    """A new secret; the current one keeps signing too for ``grace_s`` (0: from now on only the new)."""
    _row(conn, endpoint_id, tenant, lock=True)
    secret = new_secret()
    ring = data_cipher()
    now = utcnow()
    c = webhook_endpoints.c
    row = conn.execute(
        sa.update(webhook_endpoints)
        .where(c.id == endpoint_id)
        .values(
            previous_secret_sealed=c.secret_sealed if grace_s > 0 else None,
            previous_until=now + timedelta(seconds=grace_s) if grace_s > 0 else None,
            secret_sealed=ring.seal(secret, secret_context(endpoint_id)),
            key_id=ring.key_id,
            updated_at=now,
        )
        .returning(webhook_endpoints)
    ).one()
    return Endpoint.from_row(row), secret


def delete_endpoint(conn: Connection, endpoint_id: uuid.UUID, tenant: str | None) -> None:
    """Remove the endpoint with its deliveries (delivered, waiting and dead)."""
    _row(conn, endpoint_id, tenant, lock=True)
    conn.execute(sa.delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))


def secrets_in_force(
    endpoint_id: uuid.UUID,
    sealed: str,
    previous_sealed: str | None,
    previous_until: datetime | None,
    now: datetime,
) -> list[str]:
    """The clear secrets that sign a delivery of the endpoint now: the current one, and the previous
    one during a rotation's grace."""
    ring = data_cipher()
    context = secret_context(endpoint_id)
    found = [ring.open(sealed, context)]
    if previous_sealed is not None and previous_until is not None and previous_until > now:
        found.append(ring.open(previous_sealed, context))
    return found
