"""queue pauses: a row per paused queue, who paused it, when and why

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 00:00:00.000000

A new, empty table: nothing else is read or rewritten. No row means no queue is paused, as before.
The workers read a mirror of it in Redis (core/engine/pauses.py), never the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_pauses",
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("paused_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_queue_pauses")),
    )


def downgrade() -> None:
    op.drop_table("queue_pauses")
