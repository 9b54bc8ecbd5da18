"""tenant limits: a tenant's own quotas (jobs queued, jobs running per queue, requests a second) and
its fair-share weight, each NULL for the farm's setting

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 12:00:00.000000

A new, empty table: nothing else is read or rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_limits",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("max_queued", sa.Integer),
        sa.Column("max_running_per_queue", sa.Integer),
        sa.Column("rate_limit_per_s", sa.Float),
        sa.Column("weight", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", postgresql.UUID(as_uuid=True)),
        sa.CheckConstraint(
            "max_queued >= 0 AND max_running_per_queue >= 0 AND rate_limit_per_s >= 0 AND weight >= 1",
            name=op.f("ck_tenant_limits_ranges"),
        ),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_limits")),
    )


def downgrade() -> None:
    op.drop_table("tenant_limits")
