"""events: what callers are told (webhook endpoints and deliveries, the events streams read)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 20:40:00.000000

Four new, empty tables and the triggers that fill ``events``: a job reaching succeeded, dead,
retrying or cancelled, an outbound message's status changing, an unread counter changing. A trigger
asks first whether the row's tenant is listened to (an enabled webhook endpoint for that event, or an
events stream open within the window) and writes nothing otherwise, so a farm nobody listens to pays
two index lookups per change and no row. The row-level triggers fire only for the changes their
WHEN clause names, evaluated without calling a function for the others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

#: Whether a change of ``tenant`` with ``event`` (and ``job_type`` for job events) has a listener.
_LISTENED = """
CREATE FUNCTION jobyard_event_listened(p_tenant text, p_type text, p_job_type text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE tenant = p_tenant AND enabled AND p_type = ANY(events)
          AND (types IS NULL OR p_job_type IS NULL OR p_job_type = ANY(types))
    ) OR EXISTS (SELECT 1 FROM event_consumers WHERE tenant = p_tenant AND until > now())
$$
"""

#: The event row, a delivery per endpoint that asked for it, and a wake-up for senders and streams
#: (one per tenant per transaction: Postgres folds equal notifications).
_RECORD = """
CREATE FUNCTION jobyard_record_event(
    p_tenant text, p_type text, p_subject text, p_job_type text, p_data jsonb
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO events (xid, tenant, type, subject, job_type, data)
    VALUES (pg_current_xact_id()::text::bigint, p_tenant, p_type, p_subject, p_job_type, p_data)
    RETURNING id INTO new_id;
    INSERT INTO webhook_deliveries (endpoint_id, event_id, tenant, type, subject)
    SELECT id, new_id, p_tenant, p_type, p_subject FROM webhook_endpoints
    WHERE tenant = p_tenant AND enabled AND p_type = ANY(events)
      AND (types IS NULL OR p_job_type IS NULL OR p_job_type = ANY(types));
    PERFORM pg_notify('jobyard_events', p_tenant);
END
$$
"""

_JOB_EVENT = """
CREATE FUNCTION jobyard_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jobyard_event_listened(NEW.tenant, 'job.' || NEW.status, NEW.type) THEN
        PERFORM jobyard_record_event(NEW.tenant, 'job.' || NEW.status, NEW.id::text, NEW.type, to_jsonb(NEW));
    END IF;
    RETURN NULL;
END
$$
"""

# The message's job is its subject, so its statuses go in line with the job's own events.
_MESSAGE_EVENT = """
CREATE FUNCTION jobyard_message_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jobyard_event_listened(NEW.tenant, 'message.status', NULL) THEN
        PERFORM jobyard_record_event(
            NEW.tenant, 'message.status', coalesce(NEW.job_id, NEW.id)::text, NULL,
            jsonb_build_object(
                'id', NEW.id, 'job_id', NEW.job_id, 'channel', NEW.channel, 'kind', NEW.kind,
                'status', NEW.status, 'provider_message_id', NEW.provider_message_id,
                'error', NEW.error, 'sent_at', NEW.sent_at, 'delivered_at', NEW.delivered_at,
                'read_at', NEW.read_at, 'updated_at', NEW.updated_at));
    END IF;
    RETURN NULL;
END
$$
"""

_UNREAD_EVENT = """
CREATE FUNCTION jobyard_unread_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF jobyard_event_listened(NEW.tenant, 'unread.changed', NULL) THEN
        PERFORM jobyard_record_event(
            NEW.tenant, 'unread.changed', NEW.chat_id || '/' || NEW.user_id, NULL,
            jsonb_build_object(
                'chat_id', NEW.chat_id, 'user_id', NEW.user_id, 'unread', NEW.unread,
                'last_read_at', NEW.last_read_at, 'updated_at', NEW.updated_at));
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    "CREATE TRIGGER jobs_events AFTER UPDATE OF status ON jobs FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "AND NEW.status IN ('succeeded', 'dead', 'retrying', 'cancelled')) "
    "EXECUTE FUNCTION jobyard_job_event()",
    "CREATE TRIGGER outbound_messages_events AFTER UPDATE OF status ON outbound_messages FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status <> 'pending') "
    "EXECUTE FUNCTION jobyard_message_event()",
    "CREATE TRIGGER unread_counters_events_insert AFTER INSERT ON unread_counters FOR EACH ROW "
    "EXECUTE FUNCTION jobyard_unread_event()",
    "CREATE TRIGGER unread_counters_events_update AFTER UPDATE OF unread ON unread_counters FOR EACH ROW "
    "WHEN (OLD.unread IS DISTINCT FROM NEW.unread) EXECUTE FUNCTION jobyard_unread_event()",
)


def _timestamp(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _pending() -> sa.TextClause:
    return sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("xid", sa.BigInteger, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("job_type", sa.Text),
        sa.Column("data", postgresql.JSONB(none_as_null=True), nullable=False),
        _timestamp("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_tenant_xid_id", "events", ["tenant", "xid", "id"])
    op.create_index("ix_events_created_at", "events", ["created_at"], postgresql_using="brin")
    op.create_table(
        "event_consumers",
        sa.Column("tenant", sa.Text, nullable=False),
        _timestamp("until", nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_event_consumers")),
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column("types", postgresql.ARRAY(sa.Text)),
        sa.Column("description", sa.Text),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("previous_secret_sealed", sa.Text),
        _timestamp("previous_until"),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text),
        _timestamp("disabled_at"),
        _timestamp("failing_since"),
        sa.Column("created_by", postgresql.UUID(as_uuid=True)),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("ix_webhook_endpoints_tenant", "webhook_endpoints", ["tenant"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("endpoint_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _timestamp("next_attempt_at", nullable=False, now=True),
        _timestamp("leased_until"),
        _timestamp("last_attempt_at"),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_duration_ms", sa.Integer),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("delivered_at"),
        _timestamp("redriven_at"),
        sa.Column("redriven_by", postgresql.UUID(as_uuid=True)),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_webhook_deliveries_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "event_id", "endpoint_id", name=op.f("uq_webhook_deliveries_event_id_endpoint_id")
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=_pending(),
    )
    op.create_index(
        "ix_webhook_deliveries_line",
        "webhook_deliveries",
        ["endpoint_id", "subject", "id"],
        postgresql_where=_pending(),
    )
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["endpoint_id"],
        postgresql_where=sa.text("status = 'pending' AND leased_until IS NOT NULL"),
    )
    op.create_index("ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"])
    for function in (_LISTENED, _RECORD, _JOB_EVENT, _MESSAGE_EVENT, _UNREAD_EVENT):
        op.execute(function)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER unread_counters_events_update ON unread_counters")
    op.execute("DROP TRIGGER unread_counters_events_insert ON unread_counters")
    op.execute("DROP TRIGGER outbound_messages_events ON outbound_messages")
    op.execute("DROP TRIGGER jobs_events ON jobs")
    for function in (
        "jobyard_unread_event()",
        "jobyard_message_event()",
        "jobyard_job_event()",
        "jobyard_record_event(text, text, text, text, jsonb)",
        "jobyard_event_listened(text, text, text)",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("event_consumers")
    op.drop_table("events")
