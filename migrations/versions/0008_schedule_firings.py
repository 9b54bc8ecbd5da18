"""schedule firings with their own uniqueness; why a schedule was disabled; unreadable times repaired

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00.000000

Before 0008 a schedule's firing took the client-visible idempotency key ``schedule:<id>:<slot>``,
so a client could break a schedule by taking that key first; a firing is now a row of
``schedule_firings``. And client times were not bounded: a ``run_at`` of
``9999-12-31T23:59:59-14:00`` was stored as year 10000, which Postgres holds but Python cannot
read. Such rows are repaired here, as the scheduler repairs any written later by an old process
(core/engine/out_of_range.py): a job waiting for such a time goes to the dead letters with the code
``run_at_out_of_range``; a schedule holding one is disabled with the code ``time_out_of_range``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Instants every session time zone can show within Python's years 1 to 9999 (same as
#: core/engine/out_of_range.py, copied: a migration must not change when the code does).
LOW = "'0001-01-02 00:00:00+00'"
HIGH = "'9999-12-30 00:00:00+00'"


def upgrade() -> None:
    op.add_column("schedules", sa.Column("disabled_code", sa.Text(), nullable=True))
    op.add_column("schedules", sa.Column("disabled_reason", sa.Text(), nullable=True))
    op.add_column("schedules", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "schedule_firings",
        sa.Column("schedule_id", sa.UUID(), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_firings_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "slot", name=op.f("pk_schedule_firings")),
    )
    op.execute(
        f"""
        UPDATE jobs SET status = 'dead', finished_at = now(), updated_at = now(), message_id = NULL,
               error = jsonb_build_object(
                   'code', 'run_at_out_of_range',
                   'message', 'run_at ' || run_at::text || ' is past year 9999 in UTC; '
                              || 'it was stored before client times were bounded',
                   'retryable', false),
               run_at = created_at
         WHERE status IN ('scheduled', 'retrying') AND run_at >= {HIGH}
        """
    )
    # Anything else (a job due "in year 0" ran at once): only made readable again.
    op.execute(f"UPDATE jobs SET run_at = created_at WHERE run_at < {LOW} OR run_at >= {HIGH}")
    op.execute(
        f"""
        UPDATE schedules SET enabled = false, disabled_code = 'time_out_of_range',
               disabled_reason = 'start_at ' || start_at::text || ', next_run_at ' || next_run_at::text
                                 || ' is outside years 1 to 9999 in UTC; it was stored before client '
                                 || 'times were bounded',
               disabled_at = now(), start_at = created_at, next_run_at = created_at, updated_at = now()
         WHERE start_at < {LOW} OR start_at >= {HIGH} OR next_run_at < {LOW} OR next_run_at >= {HIGH}
        """
    )


def downgrade() -> None:
    op.drop_table("schedule_firings")
    op.drop_column("schedules", "disabled_at")
    op.drop_column("schedules", "disabled_reason")
    op.drop_column("schedules", "disabled_code")
