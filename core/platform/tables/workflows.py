"""The engine's workflows: named steps, each an ordinary job once the steps it runs after succeeded."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from core.platform.tables.base import Json, metadata, timestamp_column

#: What a workflow row records (core/engine/workflows.py): running until its last step succeeded,
#: or cancelled. Dead and blocked are read from its steps' jobs, never stored.
WORKFLOW_STATES = ("running", "succeeded", "cancelled")
#: A step row: waiting for the steps it runs after, enqueued (its job tells the rest), or cancelled
#: before it had a job.
STEP_STATES = ("waiting", "enqueued", "cancelled")

workflows = sa.Table(
    "workflows",
    metadata,
    # Time-ordered like a job's id (core.engine.jobs.time_ordered_ids).
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.Column("business_key", sa.Text),
    sa.Column("idempotency_key", sa.Text),
    # The API key that created it.
    sa.Column("created_by", UUID(as_uuid=True)),
    sa.Column("request_id", sa.Text),
    sa.Column("state", sa.Text, nullable=False, server_default="running"),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint(f"state IN {WORKFLOW_STATES!r}", name="state"),
)
sa.Index(
    "ix_workflows_business_key",
    workflows.c.tenant,
    workflows.c.business_key,
    postgresql_where=workflows.c.business_key.isnot(None),
)
# An idempotency key is unique within its tenant, as a job's is.
sa.Index(
    "uq_workflows_idempotency_key",
    workflows.c.tenant,
    workflows.c.idempotency_key,
    unique=True,
    postgresql_where=workflows.c.idempotency_key.isnot(None),
)

workflow_steps = sa.Table(
    "workflow_steps",
    metadata,
    sa.Column(
        "workflow_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.Column("type", sa.Text, nullable=False),
    # The payload with its templates, sealed fields sealed as a job's are; rendered into the job's.
    sa.Column("payload", Json, nullable=False),
    sa.Column("after", ARRAY(sa.Text), nullable=False),
    # The job fields the step was given (priority, max_retries).
    sa.Column("options", Json, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    # Its job once enqueued, in jobs or job_history (no foreign key: a finished job moves).
    sa.Column("job_id", UUID(as_uuid=True)),
    sa.CheckConstraint(f"state IN {STEP_STATES!r}", name="state"),
)
# A job page's link to its workflow, and pruning's check that a workflow's jobs are gone.
sa.Index("ix_workflow_steps_job_id", workflow_steps.c.job_id, unique=True)
