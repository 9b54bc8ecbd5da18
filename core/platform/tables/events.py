"""What callers are told: the events of their jobs, messages and counters, and their webhook endpoints.

``events`` is written by triggers (migration 0024) in the transaction that changed the job, message or
counter, and only for a tenant somebody listens to: one with an enabled webhook endpoint for the
event's type, or an events stream open within the window (``event_consumers``). Each event is
delivered to every endpoint that asked for it through a ``webhook_deliveries`` row inserted in the
same transaction (core/events/delivery.py sends them).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from core.platform.tables.base import Json, metadata, timestamp_column

#: The kinds of event, as callers subscribe to them.
EVENT_TYPES = (
    "job.succeeded",
    "job.dead",
    "job.retrying",
    "job.cancelled",
    "message.status",
    "unread.changed",
)
#: Kinds only an events stream gets, and only when its ``types`` names them: a running job's progress
#: (``job.progress``, up to one a second per job) would flood a webhook (migration 0026).
STREAM_ONLY_EVENT_TYPES = ("job.progress",)
#: A delivery is pending (to be sent, or sent and waiting for its next try), delivered, or dead
#: (out of tries: redriven like a dead job).
DELIVERY_STATUSES = ("pending", "delivered", "dead")

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # The writing transaction's id (pg_current_xact_id as a number): streams read events in
    # (xid, id) order and only from finished transactions, so a reader never passes an event that
    # commits later with a smaller id (core/events/log.py).
    sa.Column("xid", sa.BigInteger, nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    # What the event is about: a job's id, an outbound message's id, "user_id/chat_id" of a counter.
    sa.Column("subject", sa.Text, nullable=False),
    # The job's type for job events (an endpoint's ``types`` filter); null for the others.
    sa.Column("job_type", sa.Text),
    # The row as the transaction left it (a job's row, sealed fields still sealed).
    sa.Column("data", Json, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
)
sa.Index("ix_events_tenant_xid_id", events.c.tenant, events.c.xid, events.c.id)
sa.Index("ix_events_created_at", events.c.created_at, postgresql_using="brin")

# A tenant whose events are recorded for streams although it has no webhook endpoint: until
# ``until``, which an open stream keeps pushing ahead by the window (core/events/log.py).
event_consumers = sa.Table(
    "event_consumers",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    timestamp_column("until", nullable=False),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", ARRAY(sa.Text), nullable=False),
    # Job types whose job events it gets; null: every type.
    sa.Column("types", ARRAY(sa.Text)),
    sa.Column("description", sa.Text),
    # The signing secret, sealed with the data key (core/platform/crypto.py); never shown again.
    sa.Column("secret_sealed", sa.Text, nullable=False),
    # After a rotation, the previous secret signs too until previous_until.
    sa.Column("previous_secret_sealed", sa.Text),
    timestamp_column("previous_until"),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.Text),
    timestamp_column("disabled_at"),
    # Since when every attempt failed (null after a success): past the limit, the endpoint is disabled.
    timestamp_column("failing_since"),
    sa.Column("created_by", UUID(as_uuid=True)),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
)
sa.Index("ix_webhook_endpoints_tenant", webhook_endpoints.c.tenant)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "endpoint_id",
        UUID(as_uuid=True),
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event_id", sa.BigInteger, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    # The event's subject: deliveries of one subject to one endpoint go in event order.
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    timestamp_column("next_attempt_at", nullable=False, default_now=True),
    # Set while a sender holds it: another sender takes it only after this (its sender died).
    timestamp_column("leased_until"),
    timestamp_column("last_attempt_at"),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("last_duration_ms", sa.Integer),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("delivered_at"),
    timestamp_column("redriven_at"),
    sa.Column("redriven_by", UUID(as_uuid=True)),
    sa.CheckConstraint(f"status IN {DELIVERY_STATUSES!r}", name="status"),
    # One delivery of an event per endpoint; also how the pruner finds an event's deliveries.
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_id_endpoint_id"),
)
# What a sender takes next: an endpoint's due pending deliveries, looked at endpoint by endpoint so
# one endpoint's backlog never hides another's.
sa.Index(
    "ix_webhook_deliveries_due",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.next_attempt_at,
    postgresql_where=webhook_deliveries.c.status == "pending",
)
# The earlier pending delivery of the same subject, which a later one waits for.
sa.Index(
    "ix_webhook_deliveries_line",
    webhook_deliveries.c.endpoint_id,
    webhook_deliveries.c.subject,
    webhook_deliveries.c.id,
    postgresql_where=webhook_deliveries.c.status == "pending",
)
# The tries in flight per endpoint (a few rows: held by a sender).
sa.Index(
    "ix_webhook_deliveries_leased",
    webhook_deliveries.c.endpoint_id,
    postgresql_where=sa.and_(
        webhook_deliveries.c.status == "pending", webhook_deliveries.c.leased_until.isnot(None)
    ),
)
# The delivery log: an endpoint's deliveries, newest first.
sa.Index("ix_webhook_deliveries_endpoint_id_id", webhook_deliveries.c.endpoint_id, webhook_deliveries.c.id)
