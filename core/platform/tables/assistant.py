"""The assistant: a tenant's auto-reply configuration per channel (core/assistant/config.py)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

from core.platform.tables.base import Json, metadata, timestamp_column

# One row per tenant and channel (``whatsapp``); ``default``'s answers messages to the farm's own
# number. ``config`` holds the rest of the configuration as the API shows it (system prompt,
# knowledge, business hours, handoff words, guardrails).
assistants = sa.Table(
    "assistants",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("config", Json, nullable=False),
    timestamp_column("created_at", nullable=False, default_now=True),
    timestamp_column("updated_at", nullable=False, default_now=True),
    # The API key that last set it.
    sa.Column("updated_by", UUID(as_uuid=True)),
)
