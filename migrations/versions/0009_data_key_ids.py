"""data key ids beside every keyed hash, so a rotation can find what is left and a worker can tell
which keys the opt-outs need

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 09:00:00.000000

Each hash was written together with the sealed copy beside it, by the same key, and a sealed value
names its key (``jy1:<key id>:...``): the new columns are filled from there, without the key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("opt_outs", sa.Column("address_key_id", sa.Text(), nullable=True))
    op.execute("UPDATE opt_outs SET address_key_id = split_part(address_sealed, ':', 2)")
    op.alter_column("opt_outs", "address_key_id", nullable=False)
    op.create_index("ix_opt_outs_address_key_id", "opt_outs", ["address_key_id"], unique=False)

    op.add_column("outbound_messages", sa.Column("to_key_id", sa.Text(), nullable=True))
    op.execute("UPDATE outbound_messages SET to_key_id = split_part(to_sealed, ':', 2)")
    op.alter_column("outbound_messages", "to_key_id", nullable=False)


def downgrade() -> None:
    op.drop_column("outbound_messages", "to_key_id")
    op.drop_index("ix_opt_outs_address_key_id", table_name="opt_outs")
    op.drop_column("opt_outs", "address_key_id")
