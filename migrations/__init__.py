"""Alembic environment and revisions; `core.platform.migrate` runs them."""
