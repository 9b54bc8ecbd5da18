"""assistants: the WhatsApp assistant's configuration, customers' conversations, chats flagged for a human

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 16:30:00.000000

Two new, empty tables (``assistants``, ``whatsapp_conversations``); ``chats`` gains the two nullable
columns of a flag for a human and ``chat_messages`` the nullable id a message has outside the farm,
unique per chat where set. Adding nullable columns rewrites nothing; the partial indexes are built on
rows that all have NULL there, so they read each table once and hold nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("config", postgresql.JSONB(none_as_null=True), nullable=False),
        _timestamp("created_at", nullable=False, now=True),
        _timestamp("updated_at", nullable=False, now=True),
        sa.Column("updated_by", postgresql.UUID(as_uuid=True)),
        sa.PrimaryKeyConstraint("tenant", "channel", name=op.f("pk_assistants")),
    )
    op.create_table(
        "whatsapp_conversations",
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("phone_number_id", sa.Text, nullable=False),
        sa.Column("customer_hash", sa.Text, nullable=False),
        sa.Column("customer_sealed", sa.Text, nullable=False),
        sa.Column("customer_key_id", sa.Text, nullable=False),
        sa.Column("chat_id", sa.Text, nullable=False),
        _timestamp("last_inbound_at", nullable=False),
        _timestamp("away_sent_at"),
        _timestamp("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint(
            "tenant", "phone_number_id", "customer_hash", name=op.f("pk_whatsapp_conversations")
        ),
        sa.UniqueConstraint("tenant", "chat_id", name=op.f("uq_whatsapp_conversations_tenant_chat_id")),
    )
    op.add_column("chats", sa.Column("needs_human_reason", sa.Text))
    op.add_column("chats", _timestamp("needs_human_at"))
    op.create_index(
        "ix_chats_needs_human",
        "chats",
        ["tenant", "needs_human_at"],
        postgresql_where=sa.text("needs_human_at IS NOT NULL"),
    )
    op.add_column("chat_messages", sa.Column("external_id", sa.Text))
    op.create_index(
        "uq_chat_messages_external_id",
        "chat_messages",
        ["tenant", "chat_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_chat_messages_external_id", table_name="chat_messages")
    op.drop_column("chat_messages", "external_id")
    op.drop_index("ix_chats_needs_human", table_name="chats")
    op.drop_column("chats", "needs_human_at")
    op.drop_column("chats", "needs_human_reason")
    op.drop_table("whatsapp_conversations")
    op.drop_table("assistants")
