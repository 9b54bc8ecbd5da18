"""Alembic environment: runs revisions against the connection core.platform.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from core.platform.db import sqlalchemy_url
from core.platform.settings import get_settings
from core.platform.tables import is_history_partition, metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _declared(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate compares what migrations declare: job_history's day partitions are the farm's."""
    return not (type_ == "table" and is_history_partition(name))


def _run(connection: object) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, compare_type=True, include_name=_declared
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `jobyard migrate`")
run_migrations_online()
