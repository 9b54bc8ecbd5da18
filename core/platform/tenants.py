"""Tenants: the upstream systems that share one farm, each seeing only its own data.

Every API key belongs to a tenant, named by a slug (``shop-a``). What a key reaches is its own
tenant, unless it holds the ``admin`` scope, which reaches every tenant. Data that existed before
tenants, and keys made before them, belong to ``default``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import sqlalchemy as sa

from core.errors import InvalidTenant

DEFAULT_TENANT = "default"
#: Lower-case letters, digits and inner hyphens, 1 to 63 characters (a DNS label): safe in a URL, a
#: log line, a Redis key and a metric label without quoting.
TENANT_SHAPE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
TENANT_PATTERN = TENANT_SHAPE.pattern
ADMIN_SCOPE = "admin"


def checked_tenant(slug: str) -> str:
    """``slug`` if it is a tenant's name; raises InvalidTenant otherwise."""
    if not TENANT_SHAPE.fullmatch(slug):
        raise InvalidTenant(
            f"{slug[:80]!r} is not a tenant name: 1-63 lower-case letters, digits and inner hyphens"
        )
    return slug


def reach_of(tenant: str, scopes: Collection[str]) -> str | None:
    """The tenant a key of ``tenant`` holding ``scopes`` reaches, or None: every tenant (admin)."""
    return None if ADMIN_SCOPE in scopes else tenant


def reaches(reach: str | None, tenant: str) -> bool:
    """Whether a caller whose reach is ``reach`` (None: every tenant) may see ``tenant``'s objects."""
    return reach is None or reach == tenant


def reached(table: sa.Table, tenant: str | None) -> sa.ColumnElement[bool]:
    """The rows of ``table`` (one with a ``tenant`` column) that a caller whose reach is ``tenant``
    sees and changes: that tenant's, or every row for None (an admin key, the command line)."""
    return sa.true() if tenant is None else table.c.tenant == tenant
