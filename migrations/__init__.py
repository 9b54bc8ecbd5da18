"""Alembic environment and revisions; `core.migrate` runs them."""
