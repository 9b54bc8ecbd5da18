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
    # Whose message it is: its job's tenant (core/platform/tenants.py).
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    sa.UniqueConstraint("job_id", "attempt", name="uq_outbound_messages_job_attempt"),
)
# A tenant's messages, newest first (GET /v1/outbound-messages with a tenant's key).
sa.Index(
    "ix_outbound_messages_tenant_created",
    outbound_messages.c.tenant,
    outbound_messages.c.created_at.desc(),
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
# Each tenant has its own: a recipient who wrote STOP to shop-a's number may still hear from shop-b.
opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
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

# A tenant's own WhatsApp number (core/messaging/numbers.py): sends of its jobs go out through it,
# and the webhook finds the tenant by it. The secrets are sealed (core/platform/crypto.py), each bound
# to its field and its tenant; none is ever shown again.
tenant_whatsapp = sa.Table(
    "tenant_whatsapp",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    # Meta's id of the business phone number: the path of every send, and metadata.phone_number_id
    # of every webhook for it. One tenant's only.
    sa.Column("phone_number_id", sa.Text, nullable=False),
    sa.Column("token_sealed", sa.Text, nullable=False),
    sa.Column("app_secret_sealed", sa.Text, nullable=False),
    sa.Column("verify_token_sealed", sa.Text),
    # The data key the secrets are sealed under: a rotation finds what it has still to move.
    sa.Column("key_id", sa.Text, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    # The API key that last set it.
    sa.Column("updated_by", UUID(as_uuid=True)),
    sa.UniqueConstraint("phone_number_id", name="uq_tenant_whatsapp_phone_number_id"),
)

# A customer's WhatsApp conversation with a business number (core/messaging/conversations.py): the
# chat its messages are stored in, and when the customer last wrote (WhatsApp's 24-hour service
# window). The customer's number is found by its keyed hash and kept sealed, as an opt-out's is.
whatsapp_conversations = sa.Table(
    "whatsapp_conversations",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    # Meta's id of the business number written to ("" for the farm's number without one set).
    sa.Column("phone_number_id", sa.Text, primary_key=True),
    sa.Column("customer_hash", sa.Text, primary_key=True),
    sa.Column("customer_sealed", sa.Text, nullable=False),
    # The data key customer_hash (and customer_sealed) is under: a rotation finds what it has to move.
    sa.Column("customer_key_id", sa.Text, nullable=False),
    # The tenant's chat holding the messages (core/platform/tables/chats.py).
    sa.Column("chat_id", sa.Text, nullable=False),
    timestamp_column("last_inbound_at", nullable=False),
    # The last away message sent outside the assistant's business hours (one a day at most).
    timestamp_column("away_sent_at"),
    timestamp_column("created_at", nullable=False, default_now=True),
    sa.UniqueConstraint("tenant", "chat_id", name="uq_whatsapp_conversations_tenant_chat_id"),
)
