"""tenant whatsapp: outbound messages and opt-outs carry their tenant; a tenant's own WhatsApp number

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 14:00:00.000000

Existing outbound messages and opt-outs belong to ``default``. An opt-out becomes unique per
(tenant, channel, number hash): the primary key of ``opt_outs`` is rebuilt with the tenant first.
``tenant_whatsapp`` holds a tenant's own number, its secrets sealed under the data key. Adding a
column with a constant default rewrites nothing; the primary key and the new index read every row of
``opt_outs`` and ``outbound_messages`` once, holding writes to them meanwhile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbound_messages", sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    op.create_index(
        "ix_outbound_messages_tenant_created",
        "outbound_messages",
        ["tenant", sa.text("created_at DESC")],
    )
    op.add_column("opt_outs", sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    op.drop_constraint("pk_opt_outs", "opt_outs", type_="primary")
    op.create_primary_key("pk_opt_outs", "opt_outs", ["tenant", "channel", "address_hash"])
    op.create_table(
        "tenant_whatsapp",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("phone_number_id", sa.Text(), nullable=False),
        sa.Column("token_sealed", sa.Text(), nullable=False),
        sa.Column("app_secret_sealed", sa.Text(), nullable=False),
        sa.Column("verify_token_sealed", sa.Text(), nullable=True),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", postgresql.UUID(as_uuid=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", name="pk_tenant_whatsapp"),
        sa.UniqueConstraint("phone_number_id", name="uq_tenant_whatsapp_phone_number_id"),
    )


def downgrade() -> None:
    op.drop_table("tenant_whatsapp")
    # Back to one opt-out per number: a number several tenants' recipients opted out keeps one row.
    op.execute(
        "DELETE FROM opt_outs o USING opt_outs k WHERE o.channel = k.channel "
        "AND o.address_hash = k.address_hash AND o.tenant > k.tenant"
    )
    op.drop_constraint("pk_opt_outs", "opt_outs", type_="primary")
    op.create_primary_key("pk_opt_outs", "opt_outs", ["channel", "address_hash"])
    op.drop_column("opt_outs", "tenant")
    op.drop_index("ix_outbound_messages_tenant_created", table_name="outbound_messages")
    op.drop_column("outbound_messages", "tenant")
