"""workers live: each worker's thread count and its quiet state; hourly job counters kept 30 days

Revision ID: 0028
Revises: 0026
Create Date: 2026-12-05 00:00:00.000000

``workers`` gains ``threads`` (how many jobs it runs at once), ``quiet_requested_at`` (set by
``POST /v1/workers/{id}/quiet``) and ``quiet_at`` (set by the worker once it fetches nothing more).
Nullable columns without a default: adding them rewrites nothing, and workers of an older release
simply show no thread count.

``job_stats_hours`` holds the per-minute rows (``job_stats_minutes``, kept a day) summed per hour,
for the charts' last 24 hours and 30 days; ``job_stats_rollup.hours_rolled_until`` says which hours
are in it. The hours the minute rows already cover are summed here, so the longer chart starts with
the day the farm remembers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("threads", sa.Integer(), nullable=True))
    op.add_column("workers", sa.Column("quiet_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("workers", sa.Column("quiet_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "job_stats_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("job_status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "type", "outcome", "job_status", name=op.f("pk_job_stats_hours")),
    )
    op.add_column(
        "job_stats_rollup", sa.Column("hours_rolled_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "INSERT INTO job_stats_hours (hour, type, outcome, job_status, attempts) "
        "SELECT date_trunc('hour', m.minute), m.type, m.outcome, m.job_status, sum(m.attempts) "
        "FROM job_stats_minutes m, job_stats_rollup r "
        "WHERE r.id = 1 AND m.minute < date_trunc('hour', r.rolled_until) "
        "GROUP BY 1, 2, 3, 4"
    )
    op.execute("UPDATE job_stats_rollup SET hours_rolled_until = date_trunc('hour', rolled_until)")


def downgrade() -> None:
    op.drop_column("job_stats_rollup", "hours_rolled_until")
    op.drop_table("job_stats_hours")
    op.drop_column("workers", "quiet_at")
    op.drop_column("workers", "quiet_requested_at")
    op.drop_column("workers", "threads")
