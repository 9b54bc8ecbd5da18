"""domain tenants: chats, their messages, unread counters, embedding collections and their documents,
and scrapes carry their tenant; a chat id and a collection name are unique per tenant

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:00:00.000000

Existing rows belong to ``default``. The keys that were global gain the tenant as their last column:
``chats`` (id, tenant), ``unread_counters`` (user_id, chat_id, tenant), ``embedding_collections``
(name, tenant), ``embedding_documents`` (collection, id, tenant), and the foreign keys that point at
them follow; the tenant comes last so that a lookup by id or name alone (an admin key's, across
tenants) still uses the index. ``chat_messages``' index on (chat_id, created_at) gains the tenant
likewise. ``scrapes`` gains the column only: a scrape's id is a UUID. Adding a column with a constant
default rewrites nothing; rebuilding a key reads every row of its table, holding writes meanwhile.

The downgrade puts the global keys back, which fails (naming the clash) while two tenants hold the
same chat id, unread counter or collection name: those rows must be renamed or removed first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLES = (
    "chats",
    "chat_messages",
    "unread_counters",
    "embedding_collections",
    "embedding_documents",
    "scrapes",
)
#: Each key that becomes per tenant: (table, its key's columns before tenants).
KEYS = (
    ("chats", ("id",)),
    ("unread_counters", ("user_id", "chat_id")),
    ("embedding_collections", ("name",)),
    ("embedding_documents", ("collection", "id")),
)
#: Each foreign key onto those keys: (name, table, columns, referred table, referred columns).
FOREIGN_KEYS = (
    ("fk_chat_messages_chat_id_chats", "chat_messages", ("chat_id",), "chats", ("id",)),
    ("fk_unread_counters_chat_id_chats", "unread_counters", ("chat_id",), "chats", ("id",)),
    (
        "fk_embedding_documents_collection_embedding_collections",
        "embedding_documents",
        ("collection",),
        "embedding_collections",
        ("name",),
    ),
)
MESSAGES_INDEX = "ix_chat_messages_chat_created"


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    _rebuild(("tenant",))


def downgrade() -> None:
    conn = op.get_bind()
    for table, columns in KEYS:
        listed = ", ".join(columns)
        clash = conn.execute(
            sa.text(f"SELECT {listed} FROM {table} GROUP BY {listed} HAVING count(*) > 1 LIMIT 1")
        ).first()
        if clash is not None:
            raise RuntimeError(
                f"cannot downgrade: two tenants share {table} ({listed}) = {tuple(clash)}; "
                "rename or remove one tenant's rows first"
            )
    _rebuild(())
    for table in TABLES:
        op.drop_column(table, "tenant")


def _rebuild(extra: tuple[str, ...]) -> None:
    """Every key, foreign key and the messages' index, on their columns plus ``extra``."""
    for name, table, *_ in FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    for table, columns in KEYS:
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, [*columns, *extra])
    for name, table, columns, referred, referred_columns in FOREIGN_KEYS:
        op.create_foreign_key(
            name, table, referred, [*columns, *extra], [*referred_columns, *extra], ondelete="CASCADE"
        )
    op.drop_index(MESSAGES_INDEX, table_name="chat_messages")
    op.create_index(
        MESSAGES_INDEX, "chat_messages", ["chat_id", *extra, sa.literal_column("created_at DESC")]
    )
