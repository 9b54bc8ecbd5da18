"""Postgres tables. Alembic's revisions must produce exactly this schema (a test checks).

One MetaData holds every table; each module declares the tables of one owner, with their indexes and
the comments that explain them:

- ``base``: the MetaData and its naming convention, the ``Json`` type, ``timestamp_column``.
- ``engine``: jobs, job_attempts, job_history (a partition a day) and its partition helpers, workers,
  schedules, schedule_firings, the job_stats_* rollups, prune_counts; the job status tuples.
- ``access``: api_keys, dashboard_sessions, audit_log, tenant_limits.
- ``workflows``: workflows and their steps (core/engine/workflows.py).
- ``assistant``: assistants (a tenant's auto-reply configuration per channel).
- ``events``: events, event_consumers, webhook_endpoints, webhook_deliveries (what callers are told).
- ``chats``, ``messaging``, ``embeddings``, ``scrape``: the features' tables (``chats`` holds
  ``tenant_llm``, the LLM provider chain of a tenant's ``ai_reply`` jobs).

The modules import ``base`` and nothing else of this package; a foreign key names a table of its own
module, so any import order resolves it. Code imports the names from here (``from
core.platform.tables import jobs``), not from the modules.
"""

from __future__ import annotations

from core.platform.tables.access import api_keys, audit_log, dashboard_sessions, tenant_limits
from core.platform.tables.assistant import assistants
from core.platform.tables.base import Json, metadata, timestamp_column
from core.platform.tables.chats import chat_messages, chats, tenant_llm, unread_counters
from core.platform.tables.embeddings import INDEXED_DIMS, embedding_collections, embedding_documents
from core.platform.tables.engine import (
    HISTORY_PARTITION,
    IN_FLIGHT_STATUSES,
    JOB_STATUSES,
    OPEN_STATUSES,
    PRUNED_STATUSES,
    dead_letter_counts,
    is_history_partition,
    job_attempts,
    job_history,
    job_stats_minutes,
    job_stats_rollup,
    job_stats_totals,
    jobs,
    prune_counts,
    queue_pauses,
    schedule_firings,
    schedules,
    workers,
)
from core.platform.tables.events import (
    DELIVERY_STATUSES,
    EVENT_TYPES,
    event_consumers,
    events,
    webhook_deliveries,
    webhook_endpoints,
)
from core.platform.tables.messaging import (
    opt_outs,
    outbound_messages,
    tenant_whatsapp,
    whatsapp_conversations,
)
from core.platform.tables.scrape import scrapes
from core.platform.tables.workflows import STEP_STATES, WORKFLOW_STATES, workflow_steps, workflows

__all__ = [
    "DELIVERY_STATUSES",
    "EVENT_TYPES",
    "HISTORY_PARTITION",
    "INDEXED_DIMS",
    "IN_FLIGHT_STATUSES",
    "JOB_STATUSES",
    "OPEN_STATUSES",
    "PRUNED_STATUSES",
    "STEP_STATES",
    "WORKFLOW_STATES",
    "Json",
    "api_keys",
    "assistants",
    "audit_log",
    "chat_messages",
    "chats",
    "dashboard_sessions",
    "dead_letter_counts",
    "embedding_collections",
    "embedding_documents",
    "event_consumers",
    "events",
    "is_history_partition",
    "job_attempts",
    "job_history",
    "job_stats_minutes",
    "job_stats_rollup",
    "job_stats_totals",
    "jobs",
    "metadata",
    "opt_outs",
    "outbound_messages",
    "prune_counts",
    "queue_pauses",
    "schedule_firings",
    "schedules",
    "scrapes",
    "tenant_limits",
    "tenant_llm",
    "tenant_whatsapp",
    "timestamp_column",
    "unread_counters",
    "webhook_deliveries",
    "webhook_endpoints",
    "whatsapp_conversations",
    "workers",
    "workflow_steps",
    "workflows",
]
