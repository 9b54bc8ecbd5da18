"""Each operation's stable operationId, its summary where the handler has none worth showing, and
examples: the path parameters, the request body and the success answer, as a caller would see them.

One table, so controllers stay free of documentation plumbing; control_api/openapi.py applies it to
the generated document, and tests/unit/control_api/test_openapi.py checks that every operation has an
entry, that each example fits its schema, and that docs/reference/api.md describes every operation.
A new route needs a row here (the test names what is missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control_api.example_values import (
    API_KEY,
    AT,
    AUDIT_ID,
    DEAD_FILTER,
    DEAD_JOB,
    ENDPOINT_ID,
    EXAMPLE_SECRET,
    JOB,
    JOB_ID,
    KEY_ID,
    OPT_OUT,
    OUTBOUND,
    OUTBOUND_ID,
    QUEUED_JOB,
    SCHEDULE,
    SCHEDULE_ID,
    SCHEDULED_JOB,
    SCRAPE_ID,
    TENANT_LIMITS,
    TENANT_LLM,
    TENANT_WHATSAPP,
    UNREAD_PAYLOAD,
    WEBHOOK_DELIVERY,
    WEBHOOK_ENDPOINT,
    WORKFLOW,
    WORKFLOW_ID,
)


@dataclass(frozen=True)
class OperationDoc:
    #: Stable: client generators name their methods after it. Never rename one.
    operation_id: str
    #: Replaces the handler's summary (Litestar's default is the function's name: "Read", "Remove").
    summary: str | None = None
    #: Path parameter name -> an example value.
    params: dict[str, str] = field(default_factory=dict)
    #: The request body's example.
    request: Any = None
    #: The example of every 2xx answer with a body (JSON, or text for text/plain answers).
    response: Any = None


WORKER_ID = "host-a-4242-1f2e3d4c"
WORKER: dict[str, Any] = {
    "id": WORKER_ID,
    "hostname": "host-a",
    "pid": 4242,
    "queues": ["ai_reply", "unread_count", "whatsapp_message"],
    "threads": 8,
    "started_at": AT,
    "age_s": 2810.4,
    "last_seen_at": "2026-11-23T10:46:50Z",
    "state": "running",
    "quiet_requested_at": None,
    "quiet_at": None,
    "jobs": [
        {
            "id": JOB_ID,
            "type": "ai_reply",
            "queue": "ai_reply",
            "tenant": "shop-a",
            "attempt": 1,
            "started_at": "2026-11-23T10:46:48Z",
            "running_s": 2.6,
        }
    ],
}
CHAT_ID = "wa:3f9c2a7d51e0b846"
CHAT: dict[str, Any] = {
    "id": CHAT_ID,
    "tenant": "shop-a",
    "created_at": AT,
    "needs_human": {"reason": "the customer asked for a person ('human')", "since": AT},
    "whatsapp": {
        "phone_number_id": "106540352242922",
        "customer": "+44*******123",
        "last_inbound_at": AT,
        "window_closes_at": "2026-11-24T10:00:00Z",
    },
}
ASSISTANT_IN = {
    "enabled": True,
    "system_prompt": "You are the Teapot Shop's assistant. Answer briefly, from the product pages.",
    "knowledge": {"collection": "products", "k": 4},
    "business_hours": {
        "timezone": "Europe/London",
        "weekly": {d: ["09:00-17:30"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "away_message": "We are closed; we answer from 9:00 tomorrow.",
    },
    "handoff_words": ["human", "agent", "person"],
    "max_reply_chars": 1000,
    "forbidden_phrases": ["free shipping", "guarantee"],
}
ASSISTANT = ASSISTANT_IN | {
    "tenant": "shop-a",
    "channel": "whatsapp",
    "created_at": AT,
    "updated_at": AT,
    "updated_by": KEY_ID,
}

OPERATIONS: dict[tuple[str, str], OperationDoc] = {
    # -- jobs -----------------------------------------------------------------------------------------
    ("POST", "/v1/jobs"): OperationDoc(
        "enqueueJob",
        request={"type": "unread_count", "payload": UNREAD_PAYLOAD, "idempotency_key": "c1-u1-msg-77"},
        response=QUEUED_JOB,
    ),
    ("POST", "/v1/jobs/batch"): OperationDoc(
        "enqueueJobs",
        request={
            "jobs": [
                {"type": "unread_count", "payload": UNREAD_PAYLOAD},
                {
                    "type": "scrape",
                    "payload": {"url": "https://shop.example.com/p/42"},
                    "delay_seconds": 60,
                    "priority": 8,
                },
            ]
        },
        response={"items": [QUEUED_JOB]},
    ),
    ("GET", "/v1/jobs"): OperationDoc("listJobs", response={"items": [JOB], "next_cursor": None}),
    ("GET", "/v1/jobs/{job_id}"): OperationDoc("getJob", params={"job_id": JOB_ID}, response=JOB),
    ("GET", "/v1/events"): OperationDoc(
        "streamEvents",
        response={
            "id": "7731-5120",
            "event": "job.succeeded",
            "data": f'{{"type":"job.succeeded","timestamp":"{AT}","data":{{"id":"{JOB_ID}","status":"succeeded"}}}}',
        },
    ),
    ("GET", "/v1/jobs/{job_id}/attempts"): OperationDoc(
        "listJobAttempts",
        summary="A job's attempts, first to last",
        params={"job_id": JOB_ID},
        response={
            "items": [
                {
                    "number": 1,
                    "worker": "host-a:4242:Thread-3",
                    "started_at": AT,
                    "finished_at": "2026-11-23T10:00:30Z",
                    "outcome": "failed",
                    "error": {"code": "provider_timeout", "message": "no answer in 30 s", "retryable": True},
                    "job_status": "retrying",
                },
                {
                    "number": 2,
                    "worker": "host-b:4310:Thread-1",
                    "started_at": "2026-11-23T10:00:34Z",
                    "finished_at": "2026-11-23T10:00:35Z",
                    "outcome": "succeeded",
                    "error": None,
                    "job_status": "succeeded",
                },
            ]
        },
    ),
    ("POST", "/v1/jobs/{job_id}/cancel"): OperationDoc(
        "cancelJob",
        summary="Cancel a job (a running one is asked to stop: 202)",
        params={"job_id": JOB_ID},
        response=SCHEDULED_JOB | {"status": "cancelled", "finished_at": AT},
    ),
    ("POST", "/v1/jobs/cancel"): OperationDoc(
        "cancelJobsByBusinessKey",
        summary="Cancel every cancellable job of a business key",
        request={"business_key": "order-123"},
        response={"cancelled": 2},
    ),
    ("POST", "/v1/jobs/bulk"): OperationDoc(
        "actOnJobs",
        summary="Cancel, run now or reschedule every job of ids or a filter",
        request={
            "action": "retry",
            "filter": {"type": "ai_reply", "status": "retrying"},
            "reason": "provider back up",
            "dry_run": True,
        },
        response={
            "action": "retry",
            "matched": 212,
            "changed": 0,
            "not_eligible": {},
            "audit_id": None,
            "preview": [JOB | {"status": "retrying"}],
        },
    ),
    ("POST", "/v1/jobs/{job_id}/reschedule"): OperationDoc(
        "rescheduleJob",
        summary="Move a scheduled job to another time",
        params={"job_id": JOB_ID},
        request={"run_at": "2026-12-08T09:00:00Z"},
        response=SCHEDULED_JOB | {"run_at": "2026-12-08T09:00:00Z"},
    ),
    # -- workflows ------------------------------------------------------------------------------------
    ("POST", "/v1/workflows"): OperationDoc(
        "createWorkflow",
        request={
            "business_key": "sku-42",
            "steps": {
                "page": {"type": "scrape", "payload": {"url": "https://shop.example.com/p/42"}},
                "index": {
                    "type": "embed",
                    "after": ["page"],
                    "payload": {
                        "collection": "products",
                        "documents": [{"id": "sku-42", "text": "{{ page.result.text }}"}],
                    },
                },
            },
        },
        response=WORKFLOW,
    ),
    ("GET", "/v1/workflows/{workflow_id}"): OperationDoc(
        "getWorkflow", params={"workflow_id": WORKFLOW_ID}, response=WORKFLOW
    ),
    ("GET", "/v1/workflows"): OperationDoc("listWorkflows", response={"items": [WORKFLOW]}),
    # -- tenants --------------------------------------------------------------------------------------
    ("GET", "/v1/tenants/{tenant}/limits"): OperationDoc(
        "getTenantLimits",
        summary="A tenant's quotas and weight",
        params={"tenant": "shop-a"},
        response=TENANT_LIMITS,
    ),
    ("PUT", "/v1/tenants/{tenant}/limits"): OperationDoc(
        "setTenantLimits",
        summary="Set a tenant's own quotas and weight",
        params={"tenant": "shop-a"},
        request={"max_queued": 200_000, "weight": 2},
        response=TENANT_LIMITS,
    ),
    # -- keys -----------------------------------------------------------------------------------------
    ("GET", "/v1/keys"): OperationDoc("listKeys", response={"items": [API_KEY], "next_cursor": None}),
    ("POST", "/v1/keys"): OperationDoc(
        "createKey",
        request={
            "name": "shop-backend",
            "scopes": ["jobs:write", "jobs:read"],
            "tenant": "shop-a",
            "expires_in_seconds": None,
        },
        response={"key": API_KEY | {"last_used_at": None}, "secret": EXAMPLE_SECRET},
    ),
    ("GET", "/v1/keys/{key_id}"): OperationDoc("getKey", params={"key_id": KEY_ID}, response=API_KEY),
    ("POST", "/v1/keys/{key_id}/revoke"): OperationDoc(
        "revokeKey", params={"key_id": KEY_ID}, response=API_KEY | {"revoked_at": AT}
    ),
    ("POST", "/v1/keys/{key_id}/rotate"): OperationDoc(
        "rotateKey",
        params={"key_id": KEY_ID},
        request={"grace_seconds": 3600},
        response={
            "key": API_KEY
            | {"id": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "prefix": "jy_Pq3rS8t", "last_used_at": None},
            "secret": "jy_Pq3rS8tU1vW6xY4zA9bC2dE7fG0hJ5k",
            "previous": API_KEY
            | {"expires_at": "2026-11-23T11:00:00Z", "replaced_by": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"},
        },
    ),
    # -- chats, unread counts -------------------------------------------------------------------------
    ("GET", "/v1/chats/{chat_id}/messages"): OperationDoc(
        "listChatMessages",
        summary="A chat's messages, newest first",
        params={"chat_id": "c1"},
        response={
            "items": [
                {
                    "id": "5d6e7f80-9a1b-4c2d-8e3f-4a5b6c7d8e9f",
                    "chat_id": "c1",
                    "role": "assistant",
                    "author_id": None,
                    "content": "It ships tomorrow.",
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "usage": {"prompt_tokens": 312, "completion_tokens": 9},
                    "job_id": JOB_ID,
                    "created_at": AT,
                    "tenant": "shop-a",
                }
            ],
            "next_cursor": None,
        },
    ),
    ("POST", "/v1/chats/{chat_id}/read"): OperationDoc(
        "markChatRead",
        summary="Mark a chat read for a user (unread count to zero)",
        params={"chat_id": "c1"},
        request={"user_id": "u1"},
        response={"chat_id": "c1", "unread": 0, "tenant": "shop-a"},
    ),
    ("GET", "/v1/chats"): OperationDoc(
        "listChatsNeedingHuman",
        summary="Chats flagged for a human, longest waiting first",
        response={"items": [{k: v for k, v in CHAT.items() if k != "whatsapp"}]},
    ),
    ("GET", "/v1/chats/{chat_id}"): OperationDoc(
        "getChat",
        summary="A chat: its flag for a human and its WhatsApp conversation",
        params={"chat_id": CHAT_ID},
        response=CHAT,
    ),
    ("DELETE", "/v1/chats/{chat_id}/needs-human"): OperationDoc(
        "clearChatNeedsHuman",
        summary="Clear a chat's flag for a human (audited)",
        params={"chat_id": CHAT_ID},
    ),
    ("GET", "/v1/unread"): OperationDoc(
        "getUnreadCounts",
        summary="A user's unread counts per chat",
        response={"items": [{"chat_id": "c1", "unread": 2, "tenant": "shop-a"}], "total": 2},
    ),
    # -- collections, scrapes -------------------------------------------------------------------------
    ("GET", "/v1/collections/{name}"): OperationDoc(
        "getCollection",
        summary="A collection: its model, dimension and documents",
        params={"name": "kb"},
        response={
            "name": "kb",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "dim": 384,
            "documents": 2,
            "created_at": AT,
            "updated_at": AT,
            "tenant": "shop-a",
        },
    ),
    ("GET", "/v1/collections/{name}/search"): OperationDoc(
        "searchCollection",
        summary="The documents nearest to a query",
        params={"name": "kb"},
        response={
            "collection": "kb",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "items": [
                {
                    "id": "cat-1",
                    "text": "The cat curled up on the sofa.",
                    "metadata": {"kind": "pet"},
                    "score": 0.43,
                }
            ],
            "tenant": "shop-a",
        },
    ),
    ("GET", "/v1/scrapes/{scrape_id}"): OperationDoc(
        "getScrape",
        params={"scrape_id": SCRAPE_ID},
        response={
            "id": SCRAPE_ID,
            "job_id": JOB_ID,
            "url": "https://shop.example.com/product/42",
            "final_url": "https://shop.example.com/p/42",
            "status_code": 200,
            "title": "Teapot - Shop",
            "text": "Teapot\n12.50\nA teapot for four.",
            "fields": {"name": ["Teapot"], "price": ["12.50"]},
            "links": ["https://shop.example.com/"],
            "blocked_requests": [],
            "content_sha256": "3f0a1c9e2b7d4a6f8e5c1b0d9a7f6e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e",
            "screenshot_url": f"/v1/scrapes/{SCRAPE_ID}/screenshot",
            "created_at": AT,
            "tenant": "shop-a",
        },
    ),
    ("GET", "/v1/scrapes/{scrape_id}/screenshot"): OperationDoc(
        "getScrapeScreenshot", params={"scrape_id": SCRAPE_ID}
    ),
    # -- dead letters, audit --------------------------------------------------------------------------
    ("GET", "/v1/dead-letters"): OperationDoc(
        "listDeadLetters", response={"items": [DEAD_JOB], "next_cursor": None}
    ),
    ("POST", "/v1/dead-letters/redrive"): OperationDoc(
        "redriveDeadLetters",
        request={"filter": DEAD_FILTER, "reason": "provider outage over", "dry_run": True},
        response={"matched": 212, "redriven": 0, "audit_id": None, "preview": [DEAD_JOB]},
    ),
    ("POST", "/v1/dead-letters/discard"): OperationDoc(
        "discardDeadLetters",
        request={"ids": [JOB_ID], "reason": "the chat was deleted"},
        response={"matched": 1, "discarded": 1, "audit_id": AUDIT_ID, "preview": []},
    ),
    ("GET", "/v1/audit"): OperationDoc(
        "listAuditEntries",
        response={
            "items": [
                {
                    "id": AUDIT_ID,
                    "at": AT,
                    "actor": "alice",
                    "action": "redrive",
                    "selection": {"filter": DEAD_FILTER},
                    "reason": "provider outage over",
                    "counts": {"matched": 212, "redriven": 212},
                    "payload_patch": None,
                }
            ],
            "next_cursor": None,
        },
    ),
    # -- schedules, sequences -------------------------------------------------------------------------
    ("GET", "/v1/schedules"): OperationDoc(
        "listSchedules", response={"items": [SCHEDULE], "next_cursor": None}
    ),
    ("POST", "/v1/schedules"): OperationDoc(
        "createSchedule",
        request={
            "type": "ai_reply",
            "payload": SCHEDULE["payload"],
            "cron": "0 8 * * *",
            "timezone": "Europe/London",
        },
        response=SCHEDULE,
    ),
    ("GET", "/v1/schedules/{schedule_id}"): OperationDoc(
        "getSchedule", summary="A schedule", params={"schedule_id": SCHEDULE_ID}, response=SCHEDULE
    ),
    ("PATCH", "/v1/schedules/{schedule_id}"): OperationDoc(
        "updateSchedule",
        summary="Change a schedule (pause it with enabled: false)",
        params={"schedule_id": SCHEDULE_ID},
        request={"enabled": False},
        response=SCHEDULE | {"enabled": False},
    ),
    ("DELETE", "/v1/schedules/{schedule_id}"): OperationDoc(
        "deleteSchedule", summary="Delete a schedule", params={"schedule_id": SCHEDULE_ID}
    ),
    ("POST", "/v1/sequences"): OperationDoc(
        "createSequence",
        request={
            "business_key": "order-123",
            "anchor_at": "2026-11-20T14:00:00Z",
            "steps": [
                {
                    "after_seconds": 259200,
                    "type": "whatsapp_message",
                    "payload": {"to": "+447700900123", "text": "How is your teapot?"},
                },
                {
                    "after_seconds": 1209600,
                    "type": "whatsapp_message",
                    "payload": {"to": "+447700900123", "text": "Rate your teapot"},
                },
            ],
        },
        response={"business_key": "order-123", "jobs": [SCHEDULED_JOB]},
    ),
    # -- WhatsApp: opt-outs, outbound messages, the webhook ---------------------------------------------
    ("GET", "/v1/opt-outs"): OperationDoc("listOptOuts", response={"items": [OPT_OUT], "next_cursor": None}),
    ("POST", "/v1/opt-outs"): OperationDoc(
        "createOptOut", request={"to": "+447700900123", "reason": "asked by phone"}, response=OPT_OUT
    ),
    ("GET", "/v1/opt-outs/{number}"): OperationDoc(
        "getOptOut", params={"number": "+447700900123"}, response=OPT_OUT
    ),
    ("DELETE", "/v1/opt-outs/{number}"): OperationDoc("deleteOptOut", params={"number": "+447700900123"}),
    ("GET", "/v1/outbound-messages"): OperationDoc(
        "listOutboundMessages", response={"items": [OUTBOUND], "next_cursor": None}
    ),
    ("GET", "/v1/outbound-messages/{outbound_id}"): OperationDoc(
        "getOutboundMessage", params={"outbound_id": OUTBOUND_ID}, response=OUTBOUND
    ),
    ("POST", "/v1/outbound-messages/{outbound_id}/resolve"): OperationDoc(
        "resolveOutboundMessage",
        params={"outbound_id": OUTBOUND_ID},
        request={"sent": False, "note": "not in the customer's chat; send again"},
        response=OUTBOUND
        | {"status": "failed", "provider_message_id": None, "sent_at": None, "delivered_at": None},
    ),
    ("PUT", "/v1/tenants/{tenant}/whatsapp"): OperationDoc(
        "setTenantWhatsApp",
        params={"tenant": "shop-a"},
        request={
            "phone_number_id": "106540352242922",
            "access_token": "EAAGm0PX4ZCpsBA...ZD9x",
            "app_secret": "8f3c1e0b9a7d4c2e5b6a7f8e9d0c1b2a",
            "verify_token": "shop-a-hook-2026",
        },
        response=TENANT_WHATSAPP,
    ),
    ("GET", "/v1/tenants/{tenant}/whatsapp"): OperationDoc(
        "getTenantWhatsApp", params={"tenant": "shop-a"}, response=TENANT_WHATSAPP
    ),
    ("DELETE", "/v1/tenants/{tenant}/whatsapp"): OperationDoc(
        "deleteTenantWhatsApp", params={"tenant": "shop-a"}
    ),
    ("PUT", "/v1/tenants/{tenant}/llm"): OperationDoc(
        "setTenantLlm",
        params={"tenant": "shop-a"},
        request={
            "providers": [
                {
                    "name": "groq",
                    "base_url": "https://api.groq.com/openai/v1",
                    "api_key": "gsk_8Jd2kLq...Qx7w",
                    "model": "llama-3.3-70b-versatile",
                },
                {"name": "openai", "api_key": "sk-proj-4fG7...k9Tz", "model": "gpt-4o-mini"},
            ]
        },
        response=TENANT_LLM,
    ),
    ("GET", "/v1/tenants/{tenant}/llm"): OperationDoc(
        "getTenantLlm", params={"tenant": "shop-a"}, response=TENANT_LLM
    ),
    ("DELETE", "/v1/tenants/{tenant}/llm"): OperationDoc("deleteTenantLlm", params={"tenant": "shop-a"}),
    ("PUT", "/v1/assistants/whatsapp"): OperationDoc(
        "setWhatsAppAssistant", request=ASSISTANT_IN, response=ASSISTANT
    ),
    ("GET", "/v1/assistants/whatsapp"): OperationDoc("getWhatsAppAssistant", response=ASSISTANT),
    ("DELETE", "/v1/assistants/whatsapp"): OperationDoc("deleteWhatsAppAssistant", response=ASSISTANT),
    ("GET", "/webhooks/whatsapp"): OperationDoc("verifyWhatsAppWebhook", response="1158201444"),
    ("POST", "/webhooks/whatsapp"): OperationDoc(
        "receiveWhatsAppWebhook",
        response={
            "statuses": 2,
            "unknown_statuses": 0,
            "opt_outs": 1,
            "messages": 3,
            "auto_replies": 1,
            "handoffs": 1,
        },
    ),
    # -- ops, health ----------------------------------------------------------------------------------
    ("GET", "/v1/queues"): OperationDoc(
        "getQueues",
        response={
            "at": AT,
            "items": [
                {
                    "type": "whatsapp_message",
                    "queue": "whatsapp_message",
                    "ready": 12,
                    "queued": 14,
                    "delayed": 0,
                    "scheduled": 2150,
                    "running": 8,
                    "retrying": 3,
                    "dead": 41,
                    "oldest_ready_age_s": 0.8,
                    "succeeded_1m": 310,
                    "failed_1m": 4,
                    "latency_p50_ms": 212.0,
                    "latency_p95_ms": 870.5,
                    "paused": False,
                }
            ],
            "queues": [
                {
                    "name": "whatsapp_message",
                    "ready": 12,
                    "paused": False,
                    "paused_at": None,
                    "paused_by": None,
                    "reason": None,
                }
            ],
            "workers": {
                "alive": 1,
                "items": [
                    {
                        "id": "host-a-4242-1f2e3d4c",
                        "hostname": "host-a",
                        "pid": 4242,
                        "queues": ["ai_reply", "unread_count", "whatsapp_message"],
                        "started_at": AT,
                        "last_seen_at": "2026-11-23T10:46:50Z",
                    }
                ],
            },
            "redis_error": None,
        },
    ),
    ("POST", "/v1/queues/{queue}/pause"): OperationDoc(
        "pauseQueue",
        params={"queue": "whatsapp_message"},
        request={"reason": "WhatsApp Cloud API outage", "dry_run": False},
        response={
            "queue": "whatsapp_message",
            "paused": True,
            "paused_at": AT,
            "paused_by": "ops-admin",
            "reason": "WhatsApp Cloud API outage",
            "changed": True,
            "dry_run": False,
            "audit_id": AUDIT_ID,
            "queued": 14,
            "running": 8,
            "scheduled": 2150,
            "retrying": 3,
        },
    ),
    ("POST", "/v1/queues/{queue}/resume"): OperationDoc(
        "resumeQueue",
        params={"queue": "whatsapp_message"},
        request={"reason": "provider back", "dry_run": False},
        response={
            "queue": "whatsapp_message",
            "paused": False,
            "paused_at": None,
            "paused_by": None,
            "reason": None,
            "changed": True,
            "dry_run": False,
            "audit_id": AUDIT_ID,
            "queued": 3120,
            "running": 0,
            "scheduled": 2150,
            "retrying": 3,
        },
    ),
    ("GET", "/v1/workers"): OperationDoc("listWorkers", response={"at": AT, "alive": 1, "items": [WORKER]}),
    ("POST", "/v1/workers/{worker_id}/quiet"): OperationDoc(
        "quietWorker",
        params={"worker_id": WORKER_ID},
        request={"reason": "draining host-a before its reboot"},
        response={
            "worker": WORKER | {"state": "quieting", "quiet_requested_at": "2026-11-23T10:47:00Z"},
            "audit_id": AUDIT_ID,
        },
    ),
    ("GET", "/healthz"): OperationDoc("checkHealth", summary="The process is up", response={"status": "ok"}),
    ("GET", "/readyz"): OperationDoc(
        "checkReadiness",
        summary="Postgres and Redis answer",
        response={"status": "ready", "postgres": "ok", "redis": "ok"},
    ),
    ("GET", "/metrics"): OperationDoc(
        "getMetrics",
        summary="Prometheus metrics",
        response=(
            "# HELP jobyard_jobs_finished_total Jobs that reached succeeded or dead.\n"
            "# TYPE jobyard_jobs_finished_total counter\n"
            'jobyard_jobs_finished_total{outcome="succeeded",type="unread_count"} 1042.0\n'
        ),
    ),
    # -- webhooks -------------------------------------------------------------------------------------
    ("POST", "/v1/webhook-endpoints"): OperationDoc(
        "createWebhookEndpoint",
        request={"url": "https://shop.example.com/hooks/jobyard", "events": ["job.succeeded", "job.dead"]},
        response={"endpoint": WEBHOOK_ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    ),
    ("GET", "/v1/webhook-endpoints"): OperationDoc(
        "listWebhookEndpoints", response={"items": [WEBHOOK_ENDPOINT], "next_cursor": None}
    ),
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): OperationDoc(
        "getWebhookEndpoint", params={"endpoint_id": ENDPOINT_ID}, response=WEBHOOK_ENDPOINT
    ),
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): OperationDoc(
        "updateWebhookEndpoint",
        params={"endpoint_id": ENDPOINT_ID},
        request={"enabled": True},
        response=WEBHOOK_ENDPOINT,
    ),
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): OperationDoc(
        "rotateWebhookSecret",
        params={"endpoint_id": ENDPOINT_ID},
        request={"grace_s": 86400},
        response={
            "endpoint": WEBHOOK_ENDPOINT | {"previous_secret_until": "2026-11-24T10:00:00Z"},
            "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        },
    ),
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): OperationDoc(
        "deleteWebhookEndpoint", params={"endpoint_id": ENDPOINT_ID}
    ),
    ("GET", "/v1/webhook-deliveries"): OperationDoc(
        "listWebhookDeliveries", response={"items": [WEBHOOK_DELIVERY], "next_cursor": None}
    ),
    ("POST", "/v1/webhook-deliveries/redrive"): OperationDoc(
        "redriveWebhookDeliveries",
        request={"filter": {"endpoint": ENDPOINT_ID}, "reason": "receiver fixed", "dry_run": False},
        response={
            "matched": 1,
            "redriven": 1,
            "waiting_on_disabled": 0,
            "audit_id": AUDIT_ID,
            "preview": [WEBHOOK_DELIVERY],
        },
    ),
}
