"""The scrape feature's table."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from core.platform.tables.base import Json, metadata, timestamp_column

# What `scrape` jobs read from pages. The screenshot (PNG) is read only when asked for: the API's reads
# select the other columns, and the migration stores it out of line, uncompressed (STORAGE EXTERNAL).
scrapes = sa.Table(
    "scrapes",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    # The job that read it, in jobs or job_history (no foreign key: a finished job moves).
    sa.Column("job_id", UUID(as_uuid=True)),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("final_url", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("fields", Json, nullable=False),
    sa.Column("links", Json, nullable=False),
    # Requests of the page the SSRF guard refused.
    sa.Column("blocked_requests", Json, nullable=False),
    sa.Column("content_sha256", sa.Text, nullable=False),
    sa.Column("screenshot", sa.LargeBinary),
    timestamp_column("created_at", nullable=False, default_now=True),
    # Whose scrape it is: its job's tenant (core/platform/tenants.py).
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
)
sa.Index("ix_scrapes_job_id", scrapes.c.job_id)
