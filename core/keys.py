"""API keys: high-entropy secrets shown once, stored as SHA-256 hashes, with scopes."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.jobs import utcnow
from core.models import api_keys

SCOPES = ("jobs:write", "jobs:read", "ops")
#: Visible start of every key, so a leaked one is easy to recognise in code or logs.
KEY_PREFIX = "jy_"


class UnknownScope(ValueError):
    pass


class ApiKey(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_key(secret: str) -> str:
    # A fast hash is right here: keys carry 192 bits of randomness, so there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection, name: str, scopes: Iterable[str], expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored or shown again."""
    scopes = sorted(set(scopes))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise UnknownScope(f"unknown scopes {bad}; choose from {', '.join(SCOPES)}")
    secret = KEY_PREFIX + secrets.token_urlsafe(24)
    row = conn.execute(
        sa.insert(api_keys)
        .values(
            id=uuid.uuid4(),
            name=name,
            prefix=secret[:10],
            key_hash=hash_key(secret),
            scopes=scopes,
            expires_at=expires_at,
        )
        .returning(*api_keys.c)
    ).one()
    return _key(row), secret


def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(**{f: m[f] for f in ApiKey.__struct_fields__})


def list_keys(conn: Connection) -> list[ApiKey]:
    return [_key(r) for r in conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))]


def revoke_key(conn: Connection, key_id_or_prefix: str) -> int:
    """Revoke by id or by visible prefix; returns how many keys were revoked."""
    try:
        match = api_keys.c.id == uuid.UUID(key_id_or_prefix)
    except ValueError:
        match = api_keys.c.prefix == key_id_or_prefix
    result = conn.execute(
        sa.update(api_keys).where(match, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    return int(result.rowcount)


def lookup_key(conn: Connection, secret: str) -> ApiKey | None:
    """The live key for a secret, or None if it is unknown, revoked or expired."""
    row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == hash_key(secret))).first()
    if row is None:
        return None
    key = _key(row)
    now = utcnow()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    return key


class KeyCache:
    """Remembers lookups for a short time so each request does not cost a query.

    The lifetime bounds how long a revoked key keeps working on a process.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> tuple[bool, ApiKey | None]:
        digest = hash_key(secret)
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, secret: str, key: ApiKey | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:  # a flood of bad keys must not grow memory without bound
                self._entries.clear()
            self._entries[hash_key(secret)] = (time.monotonic() + self.ttl_s, key)
