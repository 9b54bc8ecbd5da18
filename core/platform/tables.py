"""Postgres tables. Alembic's revisions must produce exactly this schema (a test checks)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JOB_STATUSES = ("scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled")

_now = sa.text("now()")
#: JSONB that stores Python None as SQL NULL, not JSON null, so `error IS NULL` means "no error".
Json = JSONB(none_as_null=True)


def _ts(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=_now if default_now else None
    )


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
    sa.Column("run_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
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
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    _ts("published_at"),
    _ts("started_at"),
    _ts("finished_at"),
    sa.CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status"),
    sa.CheckConstraint("attempts >= 0 AND max_retries >= 0", name="counts"),
)
# The list endpoint: newest first, with and without filters.
sa.Index("ix_jobs_created", jobs.c.created_at.desc(), jobs.c.id.desc())
sa.Index("ix_jobs_type_created", jobs.c.type, jobs.c.created_at.desc())
sa.Index("ix_jobs_status_created", jobs.c.status, jobs.c.created_at.desc())
sa.Index(
    "ix_jobs_business_key",
    jobs.c.business_key,
    postgresql_where=jobs.c.business_key.isnot(None),
)
sa.Index(
    "uq_jobs_idempotency_key",
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

#: Statuses the queue overview counts; succeeded and cancelled rows, the bulk of the table, are not in
#: its index.
OPEN_STATUSES = ("scheduled", "queued", "running", "retrying", "dead")
# The queue overview and the metrics gauges: counts per type, queue and status, and the oldest queued
# job, read from this index alone.
sa.Index(
    "ix_jobs_open",
    jobs.c.type,
    jobs.c.queue,
    jobs.c.status,
    jobs.c.published_at,
    postgresql_where=jobs.c.status.in_(OPEN_STATUSES),
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
    _ts("started_at", nullable=False, default_now=True),
    _ts("last_seen_at", nullable=False, default_now=True),
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
    _ts("started_at", nullable=False, default_now=True),
    _ts("finished_at"),
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
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("published_at"),
    _ts("started_at"),
    sa.Column("finished_at", sa.DateTime(timezone=True), primary_key=True),
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
sa.Index("ix_job_history_type_created", job_history.c.type, job_history.c.created_at.desc())
sa.Index(
    "ix_job_history_business_key",
    job_history.c.business_key,
    postgresql_where=job_history.c.business_key.isnot(None),
)
sa.Index(
    "ix_job_history_idempotency_key",
    job_history.c.idempotency_key,
    postgresql_where=job_history.c.idempotency_key.isnot(None),
)
# Per status and type, the jobs that finished first: a type kept less long than its day goes by
# bounded batches, and the prune lag is a few index probes.
sa.Index("ix_job_history_finished", job_history.c.status, job_history.c.type, job_history.c.finished_at)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # The first characters of the key, shown in listings so people can tell keys apart.
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("scopes", ARRAY(sa.Text), nullable=False),
    _ts("created_at", nullable=False, default_now=True),
    _ts("expires_at"),
    _ts("revoked_at"),
    _ts("last_used_at"),
    # Requests per second this key may make; NULL: JOBYARD_RATE_LIMIT_PER_S, 0: unlimited.
    sa.Column("rate_limit_per_s", sa.Float),
    # Set when the key was rotated: the key that replaces it (this one expires after a grace period).
    sa.Column("replaced_by", UUID(as_uuid=True)),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _ts("at", nullable=False, default_now=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("selection", Json, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("counts", Json, nullable=False),
    sa.Column("payload_patch", Json),
)
sa.Index("ix_audit_log_at", audit_log.c.at.desc())

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    _ts("created_at", nullable=False, default_now=True),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chat_id", sa.Text, sa.ForeignKey("chats.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # Who wrote it: a user id for role "user"; NULL for the assistant and the system.
    sa.Column("author_id", sa.Text),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("model", sa.Text),
    sa.Column("provider", sa.Text),
    sa.Column("usage", Json),
    sa.Column("job_id", UUID(as_uuid=True)),
    _ts("created_at", nullable=False, default_now=True),
    sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name="role"),
)
sa.Index("ix_chat_messages_chat_created", chat_messages.c.chat_id, chat_messages.c.created_at.desc())

unread_counters = sa.Table(
    "unread_counters",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("chat_id", sa.Text, sa.ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("unread", sa.Integer, nullable=False, server_default="0"),
    # Messages after this time, not written by the user, are unread (what `recount` counts).
    _ts("last_read_at"),
    _ts("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint("unread >= 0", name="unread"),
)

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
    _ts("start_at", nullable=False, default_now=True),
    _ts("next_run_at", nullable=False),
    _ts("last_run_at"),
    sa.Column("last_job_id", UUID(as_uuid=True)),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    # Why the scheduler disabled the schedule (a firing that cannot work: an unknown job type after a
    # deploy, a payload that no longer validates, a rule with no next slot); NULL when it did not.
    sa.Column("disabled_code", sa.Text),
    sa.Column("disabled_reason", sa.Text),
    _ts("disabled_at"),
    sa.CheckConstraint("(every_seconds IS NULL) <> (cron IS NULL)", name="one_rule"),
    sa.CheckConstraint("every_seconds IS NULL OR every_seconds > 0", name="every_positive"),
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
    _ts("fired_at", nullable=False, default_now=True),
)

# Outbound messages: written before the provider call and completed after it, so a send whose
# outcome is unknown (the worker died in between) is never repeated automatically.
outbound_messages = sa.Table(
    "outbound_messages",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    # The job that sends it, in jobs or job_history (no foreign key: a finished job moves).
    sa.Column("job_id", UUID(as_uuid=True)),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("channel", sa.Text, nullable=False, server_default="whatsapp"),
    # The recipient, sealed (core/platform/crypto.py), and its keyed hash to find a number's messages.
    sa.Column("to_sealed", sa.Text, nullable=False),
    sa.Column("to_hash", sa.Text, nullable=False),
    # The data key to_hash (and to_sealed) is under: a rotation finds what it has still to move.
    sa.Column("to_key_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # template | text
    sa.Column("body", Json, nullable=False),
    # pending (call about to be made) | sent | dry_run | failed | delivered | read | unknown
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("provider_message_id", sa.Text),
    sa.Column("error", Json),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    _ts("sent_at"),
    _ts("delivered_at"),
    _ts("read_at"),
    sa.UniqueConstraint("job_id", "attempt", name="uq_outbound_messages_job_attempt"),
)
sa.Index("ix_outbound_messages_to_hash", outbound_messages.c.to_hash, outbound_messages.c.created_at.desc())
# Delivery-status webhooks find the message by the provider's id.
sa.Index(
    "ix_outbound_messages_provider_id",
    outbound_messages.c.provider_message_id,
    postgresql_where=outbound_messages.c.provider_message_id.isnot(None),
)

# Pruning: the oldest outbound rows first; each goes once no delivery status can come for it and its
# job has left ``jobs`` (a dead job's rows guard its redrive against sending twice).
sa.Index("ix_outbound_messages_created", outbound_messages.c.created_at)

# Recipients who asked not to be messaged (by API or by writing STOP). The number is found by its
# keyed hash and kept sealed (core/platform/crypto.py); Postgres never sees it in clear.
opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("address_hash", sa.Text, primary_key=True),
    sa.Column("address_sealed", sa.Text, nullable=False),
    # The data key address_hash (and address_sealed) is under. A worker that does not hold one of
    # these keys cannot match a number against those rows, so it refuses to send (core/messaging/optouts.py).
    sa.Column("address_key_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # api | webhook
    sa.Column("reason", sa.Text),
    _ts("created_at", nullable=False, default_now=True),
)
# The distinct key ids of the opt-outs, read by a loose index scan (one probe per key id).
sa.Index("ix_opt_outs_address_key_id", opt_outs.c.address_key_id)

# Embeddings. A collection keeps the one model (and so the one dimension) it was created with.
embedding_collections = sa.Table(
    "embedding_collections",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint("dim > 0", name="dim_positive"),
)

#: Dimensions that get an HNSW index (MiniLM/bge-small 384, 512, mpnet/bge-base 768, bge-large/e5-large
#: 1024, OpenAI-sized 1536). A model of another dimension still works, searched exactly, unindexed.
INDEXED_DIMS = (384, 512, 768, 1024, 1536)

# HNSW needs a fixed dimension, but one column must hold every model's vectors. So `embedding` is a
# `vector` without a dimension, `dim` records it (a check keeps the two in step), and each indexed
# dimension has a partial expression index over `embedding::vector(d) WHERE dim = d`. A search casts
# the same way and filters on `dim`, so the planner can use that index; a new dimension is one new
# index in a migration, not a new table or a column rewrite.
embedding_documents = sa.Table(
    "embedding_documents",
    metadata,
    sa.Column(
        "collection",
        sa.Text,
        sa.ForeignKey("embedding_collections.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    # sha256 of the text, with `model`: a document whose text and model are unchanged is not re-embedded.
    sa.Column("text_sha256", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("embedding", VECTOR(), nullable=False),
    sa.Column("metadata", Json),
    # The job that last embedded it.
    sa.Column("job_id", UUID(as_uuid=True)),
    _ts("created_at", nullable=False, default_now=True),
    _ts("updated_at", nullable=False, default_now=True),
    sa.CheckConstraint("vector_dims(embedding) = dim", name="dim_matches"),
)
for _dim in INDEXED_DIMS:
    _cast = sa.cast(embedding_documents.c.embedding, VECTOR(_dim)).label(f"embedding_{_dim}")
    sa.Index(
        f"ix_embedding_documents_hnsw_{_dim}",
        _cast,
        postgresql_using="hnsw",
        postgresql_ops={f"embedding_{_dim}": "vector_cosine_ops"},
        postgresql_where=embedding_documents.c.dim == _dim,
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
    _ts("rolled_until", nullable=False),
    sa.CheckConstraint("id = 1", name="one_row"),
)

# Dashboard logins: an API key holding `ops` traded for a session cookie. Only the cookie's hash is
# stored; revoking the key ends its sessions (the lookup checks the key every time).
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("key_id", UUID(as_uuid=True), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    # The synchronizer token every dashboard form carries.
    sa.Column("csrf_token", sa.Text, nullable=False),
    _ts("created_at", nullable=False, default_now=True),
    _ts("expires_at", nullable=False),
)
sa.Index("ix_dashboard_sessions_expires", dashboard_sessions.c.expires_at)

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
    _ts("created_at", nullable=False, default_now=True),
)
sa.Index("ix_scrapes_job_id", scrapes.c.job_id)

# Rows pruned since the farm began, per table and job status ("" for tables without one): added to
# in the transaction that deletes them, so the count is exact across schedulers and restarts.
prune_counts = sa.Table(
    "prune_counts",
    metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, primary_key=True),
    sa.Column("pruned", sa.BigInteger, nullable=False),
)
