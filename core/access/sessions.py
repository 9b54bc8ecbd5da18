"""Dashboard sessions: an API key holding `ops` traded, at the login form, for a session cookie.

Kept in Postgres so that every API process knows every session and a restart logs nobody out, and
so that no signing secret has to be shared between processes. Only a hash of the cookie's token is
stored. A session lives as long as its key does: each lookup checks that the key is still valid and
still holds `ops`, so revoking the key ends its sessions at once.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.access.keys import ApiKey, hash_key
from core.engine.jobs import utcnow
from core.platform.tables import api_keys, dashboard_sessions
from core.platform.tenants import DEFAULT_TENANT, reach_of

#: The scope a key needs to open the dashboard and act in it.
DASHBOARD_SCOPE = "ops"
#: The scope that opens the dashboard view-only: every page, no action.
DASHBOARD_READ_SCOPE = "ops:read"
#: Either opens the dashboard.
DASHBOARD_SCOPES = (DASHBOARD_SCOPE, DASHBOARD_READ_SCOPE)


@dataclass(frozen=True, slots=True)
class Session:
    key_id: uuid.UUID
    #: The API key's name: who the audit log says acted.
    key_name: str
    #: The synchronizer token every form of this session must send back.
    csrf_token: str
    expires_at: datetime
    #: The key's tenant, and the tenant its pages reach (None: every tenant, a key holding admin);
    #: read from the key at each request, so a change of the key's scopes applies at once.
    tenant: str = DEFAULT_TENANT
    reach: str | None = DEFAULT_TENANT
    #: The key holds `ops`: the session may act (a key with only `ops:read` sees, and changes nothing).
    can_act: bool = True


def open_session(conn: Connection, key: ApiKey, ttl_s: float) -> tuple[str, Session]:
    """Store a new session for ``key`` and return the cookie's token (shown only here) with it."""
    now = utcnow()
    # Sessions that ran out are of no use to anyone; the login is a quiet moment to drop them.
    conn.execute(sa.delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session = Session(
        key_id=key.id,
        key_name=key.name,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=now + timedelta(seconds=ttl_s),
        tenant=key.tenant,
        reach=key.reach,
        can_act=DASHBOARD_SCOPE in key.scopes,
    )
    conn.execute(
        sa.insert(dashboard_sessions).values(
            token_hash=hash_key(token),
            key_id=key.id,
            csrf_token=session.csrf_token,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return token, session


def find_session(conn: Connection, token: str) -> Session | None:
    """The live session of a cookie's token: not expired, its key neither revoked, expired nor
    stripped of both `ops` and `ops:read`. None otherwise."""
    now = utcnow()
    row = conn.execute(
        sa.select(
            dashboard_sessions.c.key_id,
            dashboard_sessions.c.csrf_token,
            dashboard_sessions.c.expires_at,
            api_keys.c.name,
            api_keys.c.tenant,
            api_keys.c.scopes,
        )
        .select_from(dashboard_sessions.join(api_keys, api_keys.c.id == dashboard_sessions.c.key_id))
        .where(
            dashboard_sessions.c.token_hash == hash_key(token),
            dashboard_sessions.c.expires_at > now,
            api_keys.c.revoked_at.is_(None),
            sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
            api_keys.c.scopes.overlap(list(DASHBOARD_SCOPES)),
        )
    ).first()
    if row is None:
        return None
    return Session(
        key_id=row.key_id,
        key_name=row.name,
        csrf_token=row.csrf_token,
        expires_at=row.expires_at,
        tenant=row.tenant,
        reach=reach_of(row.tenant, row.scopes),
        can_act=DASHBOARD_SCOPE in row.scopes,
    )


def close_session(conn: Connection, token: str) -> None:
    conn.execute(sa.delete(dashboard_sessions).where(dashboard_sessions.c.token_hash == hash_key(token)))
