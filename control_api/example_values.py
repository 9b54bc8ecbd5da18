"""Example values the operations' examples share (control_api/examples.py): a job, a key, a
schedule, ... as the API shows them, so one change of a shape is made in one place."""

from __future__ import annotations

from typing import Any

JOB_ID = "6f0c2a8e-3b1d-4c5e-9f7a-1d2e3f4a5b6c"
KEY_ID = "0b7e9c1a-5d2f-4e8b-a3c6-7f1d2e9b4a50"
SCHEDULE_ID = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
SCRAPE_ID = "9b2e7d4c-1a3f-4b5e-8c6d-2f1e0a9b8c7d"
OUTBOUND_ID = "4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8"
AUDIT_ID = "7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d"
AT = "2026-11-23T10:00:00Z"

UNREAD_PAYLOAD = {"chat_id": "c1", "user_id": "u1", "op": "increment", "by": 2}

JOB: dict[str, Any] = {
    "id": JOB_ID,
    "type": "unread_count",
    "queue": "unread_count",
    "status": "succeeded",
    "payload": UNREAD_PAYLOAD,
    "business_key": None,
    "idempotency_key": "c1-u1-msg-77",
    "attempts": 1,
    "max_retries": 5,
    "result": {"chat_id": "c1", "unread": 2},
    "error": None,
    "created_at": AT,
    "run_at": AT,
    "started_at": "2026-11-23T10:00:00.003Z",
    "finished_at": "2026-11-23T10:00:00.005Z",
    "request_id": "order-4711",
    "tenant": "shop-a",
    "created_by": KEY_ID,
    "cancelled_by": None,
    "priority": 5,
}
QUEUED_JOB = JOB | {
    "status": "queued",
    "attempts": 0,
    "result": None,
    "started_at": None,
    "finished_at": None,
}
SCHEDULED_JOB = QUEUED_JOB | {
    "status": "scheduled",
    "type": "whatsapp_message",
    "queue": "whatsapp_message",
    "payload": {"to": "+44*******123", "text": "Your order has shipped", "respect_quiet_hours": True},
    "business_key": "order-123",
    "idempotency_key": None,
    "run_at": "2026-12-07T10:00:00Z",
}
DEAD_JOB = JOB | {
    "type": "ai_reply",
    "queue": "ai_reply",
    "status": "dead",
    "payload": {"chat_id": "c1", "user_id": "u1", "message": "Where is my order?"},
    "idempotency_key": None,
    "attempts": 6,
    "result": None,
    "error": {"code": "provider_unavailable", "message": "openai answered 503", "retryable": True},
}
API_KEY: dict[str, Any] = {
    "id": KEY_ID,
    "name": "shop-backend",
    "prefix": "jy_Qx7vT2m",
    "scopes": ["jobs:write", "jobs:read"],
    "created_at": AT,
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": "2026-11-23T10:42:00Z",
    "rate_limit_per_s": None,
    "replaced_by": None,
    "tenant": "shop-a",
}
EXAMPLE_SECRET = "jy_Qx7vT2mK9pL4wR8sD1fG6hJ3kZ5xC0vB"  # noqa: S105 - an example, not a key
SCHEDULE: dict[str, Any] = {
    "id": SCHEDULE_ID,
    "type": "ai_reply",
    "payload": {"chat_id": "123", "user_id": "ops", "message": "What is the weather in London today?"},
    "every_seconds": None,
    "cron": "0 8 * * *",
    "timezone": "Europe/London",
    "business_key": None,
    "max_retries": None,
    "enabled": True,
    "start_at": AT,
    "next_run_at": "2026-11-24T08:00:00Z",
    "last_run_at": None,
    "last_job_id": None,
    "created_at": AT,
    "updated_at": AT,
    "disabled_code": None,
    "disabled_reason": None,
    "disabled_at": None,
    "priority": 5,
}
OPT_OUT = {
    "tenant": "shop-a",
    "channel": "whatsapp",
    "address": "+447700900123",
    "source": "api",
    "reason": "asked by phone",
    "created_at": AT,
    "key_id": "1a2b3c4d",
}
OUTBOUND: dict[str, Any] = {
    "id": OUTBOUND_ID,
    "job_id": JOB_ID,
    "attempt": 1,
    "channel": "whatsapp",
    "to": "+44*******123",
    "kind": "text",
    "body": {"type": "text", "text": {"body": "Your order has shipped"}},
    "status": "sent",
    "provider_message_id": "wamid.HBgLNDQ3NzAwOTAwMTIzFQIAERgSQjQ",
    "error": None,
    "created_at": AT,
    "updated_at": AT,
    "sent_at": AT,
    "delivered_at": "2026-11-23T10:00:02Z",
    "read_at": None,
    "tenant": "shop-a",
}
#: A tenant's own WhatsApp number as the API shows it: the secrets never, the token's last four.
TENANT_WHATSAPP: dict[str, Any] = {
    "tenant": "shop-a",
    "phone_number_id": "106540352242922",
    "token_set": True,
    "token_last4": "ZD9x",
    "app_secret_set": True,
    "verify_token_set": True,
    "key_id": "1a2b3c4d",
    "created_at": AT,
    "updated_at": AT,
    "updated_by": KEY_ID,
}
TENANT_LLM: dict[str, Any] = {
    "tenant": "shop-a",
    "providers": [
        {
            "name": "groq",
            "base_url": "https://api.groq.com/openai/v1",
            "model": "llama-3.3-70b-versatile",
            "api_key_set": True,
            "api_key_last4": "Qx7w",
        },
        {
            "name": "openai",
            "base_url": None,
            "model": "gpt-4o-mini",
            "api_key_set": True,
            "api_key_last4": "k9Tz",
        },
    ],
    "key_id": "1a2b3c4d",
    "created_at": AT,
    "updated_at": AT,
    "updated_by": KEY_ID,
}
DEAD_FILTER = {"error_code": "provider_unavailable", "since": "2026-11-20T00:00:00Z"}

TENANT_LIMITS: dict[str, Any] = {
    "tenant": "shop-a",
    "max_queued": 200_000,
    "max_running_per_queue": 0,
    "rate_limit_per_s": 0.0,
    "weight": 2,
    "overrides": {
        "max_queued": 200_000,
        "max_running_per_queue": None,
        "rate_limit_per_s": None,
        "weight": 2,
    },
    "updated_at": AT,
    "updated_by": KEY_ID,
}

WORKFLOW_ID = "01938a5c-7e21-7b3a-9c4d-5e6f7a8b9c0d"
WORKFLOW = {
    "id": WORKFLOW_ID,
    "tenant": "default",
    "business_key": "sku-42",
    "idempotency_key": None,
    "state": "running",
    "created_at": AT,
    "created_by": KEY_ID,
    "steps": [
        {"name": "page", "type": "scrape", "after": [], "state": "queued", "job_id": JOB_ID, "depth": 0},
        {"name": "index", "type": "embed", "after": ["page"], "state": "waiting", "job_id": None, "depth": 1},
    ],
}

ENDPOINT_ID = "2c4e6a8b-0d1f-4a3c-8e5b-7d9f1a3c5e7b"
WEBHOOK_ENDPOINT: dict[str, Any] = {
    "id": ENDPOINT_ID,
    "tenant": "shop-a",
    "url": "https://shop.example.com/hooks/jobyard",
    "events": ["job.dead", "job.succeeded"],
    "types": None,
    "description": None,
    "enabled": True,
    "disabled_reason": None,
    "disabled_at": None,
    "failing_since": None,
    "previous_secret_until": None,
    "created_by": KEY_ID,
    "created_at": AT,
    "updated_at": AT,
}
WEBHOOK_DELIVERY: dict[str, Any] = {
    "id": 4711,
    "endpoint_id": ENDPOINT_ID,
    "webhook_id": "msg_90210",
    "event_id": 90210,
    "type": "job.succeeded",
    "subject": JOB_ID,
    "status": "delivered",
    "attempts": 1,
    "next_attempt_at": None,
    "last_attempt_at": AT,
    "last_status_code": 204,
    "last_error": None,
    "last_duration_ms": 38,
    "created_at": AT,
    "delivered_at": AT,
    "redriven_at": None,
    "redriven_by": None,
    "tenant": "shop-a",
}
