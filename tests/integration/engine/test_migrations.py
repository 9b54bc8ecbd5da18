"""The Alembic revisions produce exactly the schema core/platform/tables/ declares."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.platform.db import get_engine
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from core.platform.tables import is_history_partition, metadata


def test_migrations_match_the_models(settings: Settings) -> None:
    with get_engine(settings).connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                # A day of job_history is made by the farm (core/engine/finished.py), not a migration.
                "include_name": lambda name, type_, _: not (type_ == "table" and is_history_partition(name)),
            },
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_migrating_again_is_a_no_op(settings: Settings) -> None:
    upgrade(settings)
    with get_engine(settings).connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {
        "jobs",
        "job_attempts",
        "api_keys",
        "audit_log",
        "chats",
        "chat_messages",
        "unread_counters",
    } <= tables
