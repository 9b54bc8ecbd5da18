"""Chats: the conversations, their messages, and each user's unread count.

Each row is its tenant's (core/platform/tenants.py): a chat id and a user id name things within one
tenant, so two tenants may both have chat ``c1``. The tenant comes last in every key, so a read by
id alone (an admin key's, across tenants) still finds its rows by the index.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from core.platform.tables.base import Json, metadata, timestamp_column

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    timestamp_column("created_at", nullable=False, default_now=True),
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
    # Flagged for a human (core/chats/flags.py): why and since when; NULL while nobody needs to look.
    sa.Column("needs_human_reason", sa.Text),
    timestamp_column("needs_human_at"),
)

chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("chat_id", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # Who wrote it: a user id for role "user"; NULL for the assistant and the system.
    sa.Column("author_id", sa.Text),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("model", sa.Text),
    sa.Column("provider", sa.Text),
    sa.Column("usage", Json),
    sa.Column("job_id", UUID(as_uuid=True)),
    timestamp_column("created_at", nullable=False, default_now=True),
    sa.Column("tenant", sa.Text, nullable=False, server_default="default"),
    # An assistant reply given documents of a collection (`ai_reply`'s `knowledge`): the collection and
    # each document's id, chunk and distance to the question. NULL: none were asked for.
    sa.Column("knowledge", Json),
    # The id the message has outside the farm (a WhatsApp message id): a webhook delivered twice
    # stores it once.
    sa.Column("external_id", sa.Text),
    sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name="role"),
    sa.ForeignKeyConstraint(["chat_id", "tenant"], ["chats.id", "chats.tenant"], ondelete="CASCADE"),
)
sa.Index(
    "ix_chat_messages_chat_created",
    chat_messages.c.chat_id,
    chat_messages.c.tenant,
    chat_messages.c.created_at.desc(),
)
sa.Index(
    "uq_chat_messages_external_id",
    chat_messages.c.tenant,
    chat_messages.c.chat_id,
    chat_messages.c.external_id,
    unique=True,
    postgresql_where=chat_messages.c.external_id.isnot(None),
)
# Chats flagged for a human, oldest first (GET /v1/chats?needs_human=true).
sa.Index(
    "ix_chats_needs_human",
    chats.c.tenant,
    chats.c.needs_human_at,
    postgresql_where=chats.c.needs_human_at.isnot(None),
)

unread_counters = sa.Table(
    "unread_counters",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("chat_id", sa.Text, primary_key=True),
    sa.Column("unread", sa.Integer, nullable=False, server_default="0"),
    # Messages after this time, not written by the user, are unread (what `recount` counts).
    timestamp_column("last_read_at"),
    timestamp_column("updated_at", nullable=False, default_now=True),
    sa.Column("tenant", sa.Text, primary_key=True, server_default="default"),
    sa.CheckConstraint("unread >= 0", name="unread"),
    sa.ForeignKeyConstraint(["chat_id", "tenant"], ["chats.id", "chats.tenant"], ondelete="CASCADE"),
)

# A tenant's own LLM provider chain (core/chats/tenant_llm.py): its `ai_reply` jobs ask these providers,
# in order, instead of the farm's. ``providers`` is a JSON list of {name, base_url, model,
# api_key_sealed}: each api key sealed (core/platform/crypto.py), bound to its field, its tenant and
# its provider's name; none is ever shown again.
tenant_llm = sa.Table(
    "tenant_llm",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("providers", Json, nullable=False),
    # The data key the api keys are sealed under: a rotation finds what it has still to move.
    sa.Column("key_id", sa.Text, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    # Set on every change: a worker's cached chain for the tenant is good while it is the same.
    timestamp_column("updated_at", nullable=False, default_now=True),
    # The API key that last set it.
    sa.Column("updated_by", UUID(as_uuid=True)),
)
