"""What every table module shares: the one MetaData (and its naming convention), the JSON type, timestamps."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: The server default of the columns that start at the row's creation.
NOW = sa.text("now()")
#: JSONB that stores Python None as SQL NULL, not JSON null, so `error IS NULL` means "no error".
Json = JSONB(none_as_null=True)


def timestamp_column(name: str, *, nullable: bool = True, default_now: bool = False) -> sa.Column[object]:
    """A `timestamptz` column; `default_now`: the server fills it in with now()."""
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=NOW if default_now else None
    )
