"""Messaging: what was sent to whom (sealed), and who asked not to be messaged."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from core.platform.tables.base import Json, metadata, timestamp_column

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
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    timestamp_column("sent_at"),
    timestamp_column("delivered_at"),
    timestamp_column("read_at"),
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
    timestamp_column("created_at", nullable=False, default_now=True),
)
# The distinct key ids of the opt-outs, read by a loose index scan (one probe per key id).
sa.Index("ix_opt_outs_address_key_id", opt_outs.c.address_key_id)
