"""Access: API keys, the dashboard's sessions, the audit log."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from core.platform.tables.base import Json, metadata, timestamp_column

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # The first characters of the key, shown in listings so people can tell keys apart.
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("scopes", ARRAY(sa.Text), nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("expires_at"),
    timestamp_column("revoked_at"),
    timestamp_column("last_used_at"),
    # Requests per second this key may make; NULL: JOBYARD_RATE_LIMIT_PER_S, 0: unlimited.
    sa.Column("rate_limit_per_s", sa.Float),
    # Set when the key was rotated: the key that replaces it (this one expires after a grace period).
    sa.Column("replaced_by", UUID(as_uuid=True)),
    # The tenant whose data the key reaches (core/access/tenants.py); the admin scope reaches all.
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    timestamp_column("at", nullable=False, default_now=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("selection", Json, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("counts", Json, nullable=False),
    sa.Column("payload_patch", Json),
    # The tenant whose jobs the action reached; NULL: an admin's, across tenants.
    sa.Column("tenant", sa.Text),
)
sa.Index("ix_audit_log_at", audit_log.c.at.desc())

# Dashboard logins: an API key holding `ops` traded for a session cookie. Only the cookie's hash is
# stored; revoking the key ends its sessions (the lookup checks the key every time).
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("key_id", UUID(as_uuid=True), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    # The synchronizer token every dashboard form carries.
    sa.Column("csrf_token", sa.Text, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("expires_at", nullable=False),
)
sa.Index("ix_dashboard_sessions_expires", dashboard_sessions.c.expires_at)

# A tenant's own quotas and fair-share weight, set by an admin (core/access/quotas.py). Each NULL
# column takes the farm's setting (JOBYARD_TENANT_*); 0 lifts the cap. Mirrored into Redis, where
# the API and the workers read them.
tenant_limits = sa.Table(
    "tenant_limits",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("max_queued", sa.Integer),
    sa.Column("max_running_per_queue", sa.Integer),
    sa.Column("rate_limit_per_s", sa.Float),
    sa.Column("weight", sa.Integer),
    timestamp_column("updated_at", nullable=False, default_now=True),
    # The API key that set them (null: the command line).
    sa.Column("updated_by", UUID(as_uuid=True)),
    sa.CheckConstraint(
        "max_queued >= 0 AND max_running_per_queue >= 0 AND rate_limit_per_s >= 0 AND weight >= 1",
        name="ranges",
    ),
)
