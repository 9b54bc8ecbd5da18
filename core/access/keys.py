"""API keys: high-entropy secrets shown once, stored as SHA-256 hashes, with scopes, expiry,
revocation, rotation with a grace period, a rate limit of their own, and the time they were last used."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import KeyNotFound, NotRotatable, UnknownScope
from core.platform.pagination import page, split_page
from core.platform.redact import KEY_PREFIX, VISIBLE_CHARS
from core.platform.tables import api_keys, dead_letter_counts, tenant_limits
from core.platform.tenants import ADMIN_SCOPE, DEFAULT_TENANT, checked_tenant, reach_of, reached

#: What a key may do; ``admin`` is not a task but a reach: every tenant's data, not only its own.
#: ``ops:read`` sees everything ``ops`` sees (the dashboard, the farm's reads) and changes nothing.
SCOPES = ("jobs:write", "jobs:read", "ops", "ops:read", ADMIN_SCOPE)
#: Random bytes of a key: 192 bits, written as 32 URL-safe base64 characters.
SECRET_BYTES = 24
#: Every key `create_key` ever made has exactly this shape; anything else is refused unread.
KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + "[A-Za-z0-9_-]{" + str(SECRET_BYTES * 4 // 3) + "}")


class ApiKey(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    #: Requests per second; None: JOBYARD_RATE_LIMIT_PER_S; 0: unlimited.
    rate_limit_per_s: float | None = None
    #: The key that replaced this one by rotation.
    replaced_by: uuid.UUID | None = None
    #: The tenant whose data the key reaches (every tenant's with the admin scope).
    tenant: str = DEFAULT_TENANT

    @property
    def reach(self) -> str | None:
        """The one tenant this key's reads and writes see, or None: every tenant (admin)."""
        return reach_of(self.tenant, self.scopes)


def carried_secret(authorization: str, x_api_key: str | None) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>`, else `X-API-Key`."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return x_api_key or None


def well_formed(secret: str) -> bool:
    """Whether ``secret`` could be a key at all (`jy_` and 32 URL-safe characters); checked before
    any hashing, caching or lookup, so malformed input costs a regular expression and nothing more."""
    return KEY_SHAPE.fullmatch(secret) is not None


def hash_key(secret: str) -> str:
    # A fast hash is right here: keys carry 192 bits of randomness, so there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None = None,
    rate_limit_per_s: float | None = None,
    tenant: str = DEFAULT_TENANT,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored or shown again."""
    checked_tenant(tenant)
    scopes = sorted(set(scopes))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise UnknownScope(f"unknown scopes {bad}; choose from {', '.join(SCOPES)}")
    secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    row = conn.execute(
        sa.insert(api_keys)
        .values(
            id=uuid.uuid4(),
            name=name,
            prefix=secret[:VISIBLE_CHARS],
            key_hash=hash_key(secret),
            scopes=scopes,
            expires_at=expires_at,
            rate_limit_per_s=rate_limit_per_s,
            tenant=tenant,
        )
        .returning(*api_keys.c)
    ).one()
    return _key(row), secret


def _key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(**{f: m[f] for f in ApiKey.__struct_fields__})


def list_keys(conn: Connection, tenant: str | None = None) -> list[ApiKey]:
    query = sa.select(api_keys).where(reached(api_keys, tenant)).order_by(api_keys.c.created_at)
    return [_key(r) for r in conn.execute(query)]


def known_tenants(conn: Connection) -> list[str]:
    """The tenants the farm knows by name, sorted: those of its API keys (revoked ones too), of the
    tenants given limits of their own, and of dead letters. Three small tables, never the jobs."""
    query = sa.union(
        sa.select(api_keys.c.tenant),
        sa.select(tenant_limits.c.tenant),
        sa.select(dead_letter_counts.c.tenant),
    )
    return sorted(conn.execute(query).scalars())


def page_keys(
    conn: Connection, limit: int, cursor: str | None, tenant: str | None = None
) -> tuple[list[ApiKey], str | None]:
    """Newest first, a page at a time (the API's list), of ``tenant``'s keys (None: every tenant's)."""
    query = sa.select(api_keys).where(reached(api_keys, tenant))
    rows = conn.execute(page(query, api_keys.c.created_at, api_keys.c.id, limit, cursor)).all()
    found, next_cursor = split_page(rows, limit)
    return [_key(r) for r in found], next_cursor


def get_key(conn: Connection, key_id: uuid.UUID, tenant: str | None = None) -> ApiKey:
    """The key, if it is ``tenant``'s (any tenant's for None): another tenant's is not found."""
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id, reached(api_keys, tenant))).first()
    if row is None:
        raise KeyNotFound(f"no API key {key_id}")
    return _key(row)


def _match(key_id_or_prefix: str) -> sa.ColumnElement[bool]:
    try:
        return api_keys.c.id == uuid.UUID(key_id_or_prefix)
    except ValueError:
        return api_keys.c.prefix == key_id_or_prefix


def find_key(conn: Connection, key_id_or_prefix: str) -> ApiKey:
    """The one key with this id or visible prefix."""
    rows = conn.execute(sa.select(api_keys).where(_match(key_id_or_prefix))).all()
    if len(rows) != 1:
        raise KeyNotFound(
            f"{len(rows)} keys match {key_id_or_prefix!r}" if rows else f"no key {key_id_or_prefix!r}"
        )
    return _key(rows[0])


def revoke_key(conn: Connection, key_id_or_prefix: str, tenant: str | None = None) -> int:
    """Revoke by id or by visible prefix, among ``tenant``'s keys (None: all); returns how many
    keys were revoked."""
    result = conn.execute(
        sa.update(api_keys)
        .where(_match(key_id_or_prefix), reached(api_keys, tenant), api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)


def rotate_key(
    conn: Connection, key_id: uuid.UUID, grace_s: float, tenant: str | None = None
) -> tuple[ApiKey, str, ApiKey]:
    """Replace a key (``tenant``'s; None: any tenant's) by a new one with the same name, scopes,
    expiry, rate limit and tenant.

    The old value keeps working for ``grace_s`` seconds (or until its own expiry, if sooner), so
    callers can switch to the new one without a failed request. Returns (new key, its secret, old key).
    """
    row = conn.execute(
        sa.select(api_keys).where(api_keys.c.id == key_id, reached(api_keys, tenant)).with_for_update()
    ).first()
    if row is None:
        raise KeyNotFound(f"no API key {key_id}")
    old = _key(row)
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise NotRotatable(f"key {old.prefix} is revoked or expired")
    if old.replaced_by is not None:
        raise NotRotatable(f"key {old.prefix} was already rotated (replaced by {old.replaced_by})")
    new, secret = create_key(
        conn, old.name, old.scopes, old.expires_at, old.rate_limit_per_s, tenant=old.tenant
    )
    until = now + timedelta(seconds=max(grace_s, 0.0))
    if old.expires_at is not None:
        until = min(until, old.expires_at)
    updated = conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(expires_at=until, replaced_by=new.id)
        .returning(*api_keys.c)
    ).one()
    return new, secret, _key(updated)


def touch_key(conn: Connection, key_id: uuid.UUID, at: datetime, min_interval_s: float) -> None:
    """Record that the key was used, unless another process did within ``min_interval_s``."""
    conn.execute(
        sa.update(api_keys)
        .where(
            api_keys.c.id == key_id,
            sa.or_(
                api_keys.c.last_used_at.is_(None),
                api_keys.c.last_used_at < at - timedelta(seconds=min_interval_s),
            ),
        )
        .values(last_used_at=at)
    )


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


#: Most live keys a KeyCache remembers: far more than a farm has callers.
MAX_LIVE = 10_000
#: Most bad secrets a KeyCache remembers (about 200 bytes each: 10 MB at most).
MAX_BAD = 50_000


class KeyCache:
    """Remembers lookups so each request does not cost a query.

    A live key is trusted for ``ttl_s`` (the lag of a revocation). A secret that is unknown, revoked
    or expired is remembered for ``negative_ttl_s``: such a secret never becomes valid again (new
    keys are fresh random values), so a flood of bad keys costs one lookup per distinct key. Both
    maps are bounded, oldest entries going first, so no flood grows memory past a few MB. A live
    key stays remembered (as ``known``) after its entry expired, until it is pushed out: the next
    lookup of a key we have seen is not queued behind lookups of strangers (control_api/auth.py).
    """

    def __init__(
        self, ttl_s: float, negative_ttl_s: float = 0.0, *, max_live: int = MAX_LIVE, max_bad: int = MAX_BAD
    ) -> None:
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s or ttl_s
        self.max_live, self.max_bad = max_live, max_bad
        self._live: OrderedDict[bytes, tuple[float, ApiKey]] = OrderedDict()
        self._bad: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(secret: str) -> bytes:
        return hashlib.sha256(secret.encode()).digest()

    def get(self, secret: str) -> tuple[bool, ApiKey | None]:
        """(True, key) for a live key trusted now, (True, None) for a remembered bad secret,
        (False, None) when a lookup is needed."""
        digest = self.digest(secret)
        now = time.monotonic()
        with self._lock:
            bad_until = self._bad.get(digest)
            if bad_until is not None:
                if bad_until >= now:
                    return True, None
                del self._bad[digest]
            live = self._live.get(digest)
        if live is not None and live[0] >= now:
            return True, live[1]
        return False, None

    def known(self, secret: str) -> bool:
        """Whether this process has seen ``secret`` as a live key (its entry may have expired)."""
        with self._lock:
            return self.digest(secret) in self._live

    def put(self, secret: str, key: ApiKey | None) -> None:
        digest = self.digest(secret)
        now = time.monotonic()
        with self._lock:
            if key is None:
                self._live.pop(digest, None)
                self._bad[digest] = now + self.negative_ttl_s
                self._bad.move_to_end(digest)
                while len(self._bad) > self.max_bad:
                    self._bad.popitem(last=False)
            else:
                self._live[digest] = (now + self.ttl_s, key)
                self._live.move_to_end(digest)
                while len(self._live) > self.max_live:
                    self._live.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live) + len(self._bad)


class UsageClock:
    """Which keys this process should mark as used now: each at most once per interval, so
    last_used_at costs one small UPDATE per key per minute, not a write per request."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[uuid.UUID, float] = {}
        self._lock = threading.Lock()

    def due(self, key_id: uuid.UUID) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key_id)
            if last is not None and now - last < self.interval_s:
                return False
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key_id] = now
            return True
