"""cancel a running job, and job progress: jobs (and their history) record a cancel request and the
progress their handler reported; a progress report is an event (``job.progress``) for open streams

Revision ID: 0026
Revises: 0024
Create Date: 2026-12-05 00:00:00.000000

Nullable columns without a default: adding them rewrites nothing. ``cancel_requested_at`` is set by
``POST /v1/jobs/{id}/cancel`` on a running job, in the transaction that also notifies the workers
(``jobyard_cancel``, the job's id as payload): the worker holding the job stops it. The progress
columns are written by ``ctx.progress`` at most about once a second per job.

A progress report is recorded as an event only while an events stream of the tenant is open (or
within the window after): webhooks never get ``job.progress`` (core/events/endpoints.py refuses it),
so a long job does not send a webhook a second. Like the other job triggers, the WHEN clause keeps
every other update of ``jobs`` from calling the function.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

TABLES = ("jobs", "job_history")

_PROGRESS_EVENT = """
CREATE FUNCTION jobyard_job_progress_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM event_consumers WHERE tenant = NEW.tenant AND until > now()) THEN
        PERFORM jobyard_record_event(NEW.tenant, 'job.progress', NEW.id::text, NEW.type, to_jsonb(NEW));
    END IF;
    RETURN NULL;
END
$$
"""

_PROGRESS_TRIGGER = (
    "CREATE TRIGGER jobs_progress_events AFTER UPDATE OF progress_at ON jobs FOR EACH ROW "
    "WHEN (NEW.progress_at IS NOT NULL AND OLD.progress_at IS DISTINCT FROM NEW.progress_at "
    "AND NEW.status = 'running') "
    "EXECUTE FUNCTION jobyard_job_progress_event()"
)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
        op.add_column(table, sa.Column("progress_fraction", sa.Float))
        op.add_column(table, sa.Column("progress_message", sa.Text))
        op.add_column(table, sa.Column("progress_at", sa.DateTime(timezone=True)))
    op.execute(_PROGRESS_EVENT)
    op.execute(_PROGRESS_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_progress_events ON jobs")
    op.execute("DROP FUNCTION jobyard_job_progress_event()")
    for table in TABLES:
        for column in ("progress_at", "progress_message", "progress_fraction", "cancel_requested_at"):
            op.drop_column(table, column)
