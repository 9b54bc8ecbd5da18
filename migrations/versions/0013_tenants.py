"""tenants: every API key belongs to a tenant; the admin scope reaches every tenant

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 08:10:00.000000

Existing keys belong to the ``default`` tenant, where all existing data is. Before tenants an
``ops`` key reached everything; it keeps that reach by gaining the ``admin`` scope, so an upgrade
takes nobody's view away (a key meant for one tenant is made anew with ``tenant``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    op.execute(
        "UPDATE api_keys SET scopes = ARRAY(SELECT unnest(scopes || 'admin'::text) ORDER BY 1) "
        "WHERE 'ops' = ANY(scopes) AND NOT 'admin' = ANY(scopes)"
    )


def downgrade() -> None:
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'admin')")
    op.execute("DELETE FROM api_keys WHERE scopes = '{}'")
    op.drop_column("api_keys", "tenant")
