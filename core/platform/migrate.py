"""Apply Alembic revisions programmatically (used by `jobyard migrate`, `jobyard up` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from core.platform.db import get_engine
from core.platform.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"

#: Any fixed number works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x6A6F6279


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Bring the database to `revision`; safe to run from several processes at once."""
    settings = settings or get_settings()
    config = alembic_config()
    with get_engine(settings).begin() as conn:
        # A migration may rewrite a large table, and a second migrator waits for the first one:
        # neither is cut short by the timeouts the farm's own sessions get (core/platform/db.py).
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        conn.execute(text("SET LOCAL lock_timeout = 0"))
        # Two `jobyard up`/release steps racing must not both create the tables.
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        # A data migration may need a key from the settings (0005 seals phone numbers).
        config.attributes["settings"] = settings
        command.upgrade(config, revision)
