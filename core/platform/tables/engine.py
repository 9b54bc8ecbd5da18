"""The engine's tables: jobs, their attempts and their finished history (a partition a day), the worker
processes, the schedules and their firings, the job counters' rollups, the prune counts; the job statuses.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from core.platform.tables.base import NOW, Json, metadata, timestamp_column

#: Every status a job can be in (the check on jobs.status).
JOB_STATUSES = ("scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("business_key", sa.Text),
    sa.Column("run_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("result", Json),
    sa.Column("error", Json),
    sa.Column("request_id", sa.Text),
    # Id of the Redis message that carries the job; NULL until published. The sweeper looks it up
    # in Redis to tell a message that is still queued from one Redis lost.
    sa.Column("message_id", sa.Text),
    # The worker process (workers.id) running the job, and the time after which a run is presumed
    # stuck (started_at + the type's time limit + a grace period): recovery reads both.
    sa.Column("worker", sa.Text),
    sa.Column("worker_id", sa.Text),
    sa.Column("deadline_at", sa.DateTime(timezone=True)),
    # Attempts that do not count against max_retries: rate-limited waits, runs handed back at a
    # worker's shutdown, and every attempt before the latest redrive (which grants a fresh budget).
    sa.Column("retry_base", sa.Integer, nullable=False, server_default="0"),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    timestamp_column("published_at"),
    timestamp_column("started_at"),
    timestamp_column("finished_at"),
    # Whose job it is (core/platform/tenants.py), and the API keys that created, cancelled (or
    # discarded) and last redrove it.
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.Column("created_by", UUID(as_uuid=True)),
    sa.Column("cancelled_by", UUID(as_uuid=True)),
    sa.Column("redriven_by", UUID(as_uuid=True)),
    # 0-9, 9 the most urgent: orders the work of one tenant within its share (core/engine/lanes.py).
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
    # The workflow the job is a step of (core/engine/workflows.py); NULL for every other job, which
    # is all a success needs to know to skip the workflow's work: the claim returns it.
    sa.Column("workflow_id", UUID(as_uuid=True)),
    # A cancel asked of the job while it ran (migration 0026): the worker holding it stops it.
    timestamp_column("cancel_requested_at"),
    # The last progress its handler reported (ctx.progress): a fraction 0..1, a message, when.
    sa.Column("progress_fraction", sa.Float),
    sa.Column("progress_message", sa.Text),
    timestamp_column("progress_at"),
    sa.CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status"),
    sa.CheckConstraint("attempts >= 0 AND max_retries >= 0", name="counts"),
    sa.CheckConstraint("priority BETWEEN 0 AND 9", name="priority"),
)
# The list endpoint: newest first, with and without filters.
sa.Index("ix_jobs_created", jobs.c.created_at.desc(), jobs.c.id.desc())
# Each filter's rows in the list's order, (created_at, id), so a page reads the page (migration 0027).
for _column in ("type", "status", "tenant", "queue"):
    sa.Index(f"ix_jobs_{_column}_created", jobs.c[_column], jobs.c.created_at.desc(), jobs.c.id.desc())
sa.Index(
    "ix_jobs_business_key",
    jobs.c.business_key,
    postgresql_where=jobs.c.business_key.isnot(None),
)
# An idempotency key is unique within its tenant: two callers may both use "order-123".
sa.Index(
    "uq_jobs_idempotency_key",
    jobs.c.tenant,
    jobs.c.idempotency_key,
    unique=True,
    postgresql_where=jobs.c.idempotency_key.isnot(None),
)
# The scheduler: jobs waiting for their time (first runs and retries), oldest due first.
sa.Index(
    "ix_jobs_due",
    jobs.c.run_at,
    postgresql_where=jobs.c.status.in_(("scheduled", "retrying")),
)
# The sweeper: queued jobs whose message may have been lost, least recently published first.
sa.Index(
    "ix_jobs_queued_published",
    jobs.c.published_at,
    postgresql_where=jobs.c.status == "queued",
)

#: Statuses the queue overview counts: the work in flight from ix_jobs_open, dead letters from
#: dead_letter_counts.
OPEN_STATUSES = ("scheduled", "queued", "running", "retrying", "dead")
# The queue overview and the metrics gauges: counts per type, queue and status of the work in flight,
# and the oldest queued job, read from this index alone.
#: Statuses of jobs still to run (or running): the work in flight, whose size the live table follows.
IN_FLIGHT_STATUSES = ("scheduled", "queued", "running", "retrying")
sa.Index(
    "ix_jobs_open",
    jobs.c.type,
    jobs.c.queue,
    jobs.c.status,
    jobs.c.published_at,
    # Last, so that a tenant's counts are answered from the index too (migration 0016).
    jobs.c.tenant,
    postgresql_where=jobs.c.status.in_(IN_FLIGHT_STATUSES),
)
# Dead letters per tenant, type and queue, kept by triggers on jobs in the transaction that makes a job dead,
# redrives, discards or prunes it (migration 0012): the overview reads a row per type, not every dead
# letter (a month of them is hundreds of thousands on a busy farm).
dead_letter_counts = sa.Table(
    "dead_letter_counts",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("queue", sa.Text, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
)

#: Final statuses whose jobs are removed once their retention has passed (core/engine/retention.py).
PRUNED_STATUSES = ("succeeded", "cancelled", "dead")
# Pruning: per final status and type, the jobs that finished first; also the oldest one (prune lag),
# and the types present (a loose index scan).
sa.Index(
    "ix_jobs_finished",
    jobs.c.status,
    jobs.c.type,
    jobs.c.finished_at,
    postgresql_where=jobs.c.status.in_(PRUNED_STATUSES),
)

# Recovery: running jobs of a given worker process, and running jobs past their deadline.
sa.Index("ix_jobs_running_worker", jobs.c.worker_id, postgresql_where=jobs.c.status == "running")
sa.Index("ix_jobs_running_deadline", jobs.c.deadline_at, postgresql_where=jobs.c.status == "running")

# Worker processes and their heartbeats. Kept in Postgres, not Redis: a Redis restart must not make
# every worker look dead.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", ARRAY(sa.Text), nullable=False),
    # Dramatiq's id for this process's consumers: its unacked messages sit in Redis under this id.
    sa.Column("broker_id", sa.Text),
    timestamp_column("started_at", nullable=False, default_now=True),
    timestamp_column("last_seen_at", nullable=False, default_now=True),
    # Jobs it runs at once (its --threads); NULL for a worker of an older release.
    sa.Column("threads", sa.Integer),
    # Quiet (core/engine/workers.py): asked by ops, and done once the worker fetches nothing more.
    timestamp_column("quiet_requested_at"),
    timestamp_column("quiet_at"),
)

# Paused queues (core/engine/pauses.py): a row while the queue is paused. Workers read a mirror in
# Redis, never this table.
queue_pauses = sa.Table(
    "queue_pauses",
    metadata,
    sa.Column("queue", sa.Text, primary_key=True),
    timestamp_column("paused_at", nullable=False, default_now=True),
    sa.Column("paused_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("job_id", UUID(as_uuid=True), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    # The job's type, copied by the claim's insert (no extra statement), so the job counters and the
    # throughput chart count attempts without joining jobs. NULL for attempts older than it (they are
    # looked up in jobs instead).
    sa.Column("type", sa.Text),
    sa.Column("worker", sa.Text, nullable=False),
    timestamp_column("started_at", nullable=False, default_now=True),
    timestamp_column("finished_at"),
    # running | succeeded | failed | rate_limited | lost | timed_out | interrupted | postponed
    sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
    sa.Column("error", Json),
    # The status the attempt left its job in (succeeded, retrying, dead, queued), written by the same
    # statement that ends the attempt: the job counters read it, since the job's own status moves on
    # (a dead job redriven is dead no more). NULL while running, and for attempts older than it.
    sa.Column("job_status", sa.Text),
)
# Job counters and the throughput chart read attempts by the time they ended (core/engine/stats.py).
sa.Index(
    "ix_job_attempts_finished",
    job_attempts.c.finished_at,
    postgresql_where=job_attempts.c.finished_at.isnot(None),
)

# Finished history: succeeded and cancelled jobs leave ``jobs`` once their attempts are folded into the
# job counters (core/engine/finished.py), their attempts folded into ``attempt_log``. Partitioned by
# the UTC day the job finished (job_history_YYYYMMDD), so a day of history goes by dropping its table:
# no DELETE, no dead tuples, no vacuum (core/engine/retention.py). Dead jobs stay in ``jobs``, where
# the dead-letter queue and its redrive work. The primary key must hold the partition key; ids are
# random UUIDs, and a job is in one table at a time (moved in one transaction).
job_history = sa.Table(
    "job_history",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("business_key", sa.Text),
    sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("result", Json),
    sa.Column("error", Json),
    sa.Column("request_id", sa.Text),
    sa.Column("message_id", sa.Text),
    sa.Column("worker", sa.Text),
    sa.Column("retry_base", sa.Integer, nullable=False),
    timestamp_column("created_at", nullable=False),
    timestamp_column("updated_at", nullable=False),
    timestamp_column("published_at"),
    timestamp_column("started_at"),
    sa.Column("finished_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.Column("created_by", UUID(as_uuid=True)),
    sa.Column("cancelled_by", UUID(as_uuid=True)),
    sa.Column("redriven_by", UUID(as_uuid=True)),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
    timestamp_column("cancel_requested_at"),
    sa.Column("progress_fraction", sa.Float),
    sa.Column("progress_message", sa.Text),
    timestamp_column("progress_at"),
    # The job's attempts, oldest first, as GET /v1/jobs/{id}/attempts shows them.
    sa.Column("attempt_log", Json, nullable=False),
    postgresql_partition_by="RANGE (finished_at)",
)
#: The name of a day's partition of job_history, e.g. job_history_20261202.
HISTORY_PARTITION = re.compile(r"job_history_\d{8}")


def is_history_partition(name: str | None) -> bool:
    """A day of job_history: made and dropped by the farm, so no migration declares it."""
    return name is not None and HISTORY_PARTITION.fullmatch(name) is not None


# The same reads as jobs': the list endpoint (newest first, by type), business and idempotency keys.
sa.Index("ix_job_history_created", job_history.c.created_at.desc(), job_history.c.id.desc())
for _column in ("type", "status", "tenant", "queue"):
    sa.Index(
        f"ix_job_history_{_column}_created",
        job_history.c[_column],
        job_history.c.created_at.desc(),
        job_history.c.id.desc(),
    )
sa.Index(
    "ix_job_history_business_key",
    job_history.c.business_key,
    postgresql_where=job_history.c.business_key.isnot(None),
)
sa.Index(
    "ix_job_history_idempotency_key",
    job_history.c.tenant,
    job_history.c.idempotency_key,
    postgresql_where=job_history.c.idempotency_key.isnot(None),
)
# Per status and type, the jobs that finished first: a type kept less long than its day goes by
# bounded batches, and the prune lag is a few index probes.
sa.Index("ix_job_history_finished", job_history.c.status, job_history.c.type, job_history.c.finished_at)

# Recurring schedules: each firing creates a normal job (retries, dead letters, history).
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("every_seconds", sa.Integer),
    sa.Column("cron", sa.Text),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("business_key", sa.Text),
    sa.Column("max_retries", sa.Integer),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    timestamp_column("start_at", nullable=False, default_now=True),
    timestamp_column("next_run_at", nullable=False),
    timestamp_column("last_run_at"),
    sa.Column("last_job_id", UUID(as_uuid=True)),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    # Why the scheduler disabled the schedule (a firing that cannot work: an unknown job type after a
    # deploy, a payload that no longer validates, a rule with no next slot); NULL when it did not.
    sa.Column("disabled_code", sa.Text),
    sa.Column("disabled_reason", sa.Text),
    timestamp_column("disabled_at"),
    # Whose schedule it is (its jobs are that tenant's), and the API key that created it.
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.Column("created_by", UUID(as_uuid=True)),
    # The priority of the jobs it fires.
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
    sa.CheckConstraint("(every_seconds IS NULL) <> (cron IS NULL)", name="one_rule"),
    sa.CheckConstraint("every_seconds IS NULL OR every_seconds > 0", name="every_positive"),
    sa.CheckConstraint("priority BETWEEN 0 AND 9", name="priority"),
)
# The scheduler: enabled schedules that are due.
sa.Index("ix_schedules_due", schedules.c.next_run_at, postgresql_where=schedules.c.enabled)
sa.Index("ix_schedules_created", schedules.c.created_at.desc(), schedules.c.id.desc())

# One row per slot a schedule fired: the primary key is what keeps a slot from firing twice, in a
# namespace of its own (a client's idempotency keys cannot collide with it).
schedule_firings = sa.Table(
    "schedule_firings",
    metadata,
    sa.Column(
        "schedule_id",
        UUID(as_uuid=True),
        sa.ForeignKey("schedules.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("slot", sa.DateTime(timezone=True), primary_key=True),
    # The job the firing created (no foreign key, like schedules.last_job_id).
    sa.Column("job_id", UUID(as_uuid=True)),
    timestamp_column("fired_at", nullable=False, default_now=True),
)

# Finished attempts rolled up per minute and in running totals (core/engine/stats.py): the job counters
# and the throughput chart read these plus the few minutes of attempts not rolled up yet, so they
# cost the same after a billion jobs, and hold across every worker and API process and restart.
job_stats_minutes = sa.Table(
    "job_stats_minutes",
    metadata,
    sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Text, primary_key=True),
    # "" for attempts that ended before job_attempts.job_status existed.
    sa.Column("job_status", sa.Text, primary_key=True),
    sa.Column("attempts", sa.BigInteger, nullable=False),
)

job_stats_totals = sa.Table(
    "job_stats_totals",
    metadata,
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Text, primary_key=True),
    sa.Column("job_status", sa.Text, primary_key=True),
    sa.Column("attempts", sa.BigInteger, nullable=False),
    # Sum of the attempts' run times, and how many fell in each duration bucket (core.engine.stats).
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("duration_buckets", ARRAY(sa.BigInteger), nullable=False),
)

# One row: attempts that ended before rolled_until are in the two tables above.
job_stats_rollup = sa.Table(
    "job_stats_rollup",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    timestamp_column("rolled_until", nullable=False),
    # Hours before this are summed into job_stats_hours (from the minute rows).
    timestamp_column("hours_rolled_until"),
    sa.CheckConstraint("id = 1", name="one_row"),
)

# job_stats_minutes summed per hour, kept JOBYARD_RETAIN_HOURLY_ROLLUPS (30 days): the longer charts.
job_stats_hours = sa.Table(
    "job_stats_hours",
    metadata,
    sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("type", sa.Text, primary_key=True),
    sa.Column("outcome", sa.Text, primary_key=True),
    sa.Column("job_status", sa.Text, primary_key=True),
    sa.Column("attempts", sa.BigInteger, nullable=False),
)

# Rows pruned since the farm began, per table and job status ("" for tables without one): added to
# in the transaction that deletes them, so the count is exact across schedulers and restarts.
prune_counts = sa.Table(
    "prune_counts",
    metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True),
    sa.Column("pruned", sa.BigInteger, nullable=False),
)
