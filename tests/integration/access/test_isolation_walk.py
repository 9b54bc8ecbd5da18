"""Every operation of the API, walked by one tenant against another's objects.

Tenant A (shop-a) fills a farm with one of everything a tenant owns: jobs scheduled, succeeded and
dead, a schedule, a sequence, a workflow (a dead step, a blocked one), a chat with messages and an
unread count, a collection, a scrape with its screenshot, an outbound WhatsApp message, an opt-out,
its own WhatsApp number and assistant, a customer's conversation flagged for a human, its limits,
its keys and the audit entries all that wrote. Tenant B (shop-b) holds every scope a tenant's key
can hold (``jobs:write``, ``jobs:read``, ``ops``), owns objects of its own, and then calls every
operation of the OpenAPI document, naming A's ids, names, business keys and idempotency keys
wherever the operation takes one. The walk checks what a careful attacker would:

- **Nothing is read.** No answer B gets holds anything of A's that B did not send itself: ids,
  payload markers, chat text, document text, numbers, key prefixes.
- **Nothing is revealed.** Every answer to a request naming one of A's objects is exactly the answer
  to the same request naming an object no tenant ever had (a "ghost"), status and body alike. And
  every list, count and overview B reads is the same before and after A's objects exist.
- **Nothing is changed.** Everything A reads of its own world, with its own key, is the same after
  B's walk as before it.

The walk covers the OpenAPI document: an operation added later without an entry here fails
``test_the_walk_covers_every_operation`` until its attack is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from core.engine.jobs import utcnow
from core.launch.roles import queues_except
from core.messaging.webhook import signature
from core.platform.settings import Settings
from tests.fakes.embeddings import FakeEmbeddingServer
from tests.fakes.openai import FakeOpenAI
from tests.fakes.site import FakeSite
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp, customer_message
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.integration.engine.test_dead_letters import DIES_AT_ONCE
from tests.integration.scrape.test_scrape import SITE_HOST

A, B = "shop-a", "shop-b"
#: Every scope a key of one tenant may hold (admin reaches every tenant by definition).
TENANT_SCOPES = ("jobs:write", "jobs:read", "ops")
#: Each tenant's own WhatsApp number on the fake Cloud API: id, token, app secret, verify token.
NUMBERS = {
    A: ("300000000000001", "shop-a-token-walk-A111", "shop-a-app-secret-walk", "shop-a-verify-walk-1"),
    B: ("300000000000002", "shop-b-token-walk-B222", "shop-b-app-secret-walk", "shop-b-verify-walk-2"),
}
#: Each tenant's own LLM provider's key (the provider itself is the farm's fake, allow-listed).
LLM_KEYS = {A: "sk-shop-a-llm-key-walk-1111", B: "sk-shop-b-llm-key-walk-2222"}
#: What A writes that no one else does: found in any answer B gets, it leaked.
A_MARKER = "a-only-marker-7f3e"
A_RECIPIENT = "+14155550301"
B_RECIPIENT = "+14155550302"
GHOST_RECIPIENT = "+14155550399"
GHOST_TENANT = "shop-ghost"
EMBEDDING_MODEL = "fake-org/tei-model"

#: Fields of an answer that move with the clock alone, whoever else is on the farm, and the id of the
#: audit entry a request itself writes (each request its own).
VOLATILE = {
    "audit_id",
    "at",
    "last_seen_at",
    "succeeded_1m",
    "failed_1m",
    "latency_p50_ms",
    "latency_p95_ms",
    "oldest_ready_age_s",
    "age_s",
}


@pytest.fixture
def fakes() -> Iterator[dict[str, Any]]:
    whatsapp = FakeWhatsApp()
    for phone_number_id, token, _, _ in NUMBERS.values():
        whatsapp.add_number(phone_number_id, token)
    made = {"llm": FakeOpenAI("llm"), "whatsapp": whatsapp, "tei": FakeEmbeddingServer(), "site": FakeSite()}
    yield made
    for fake in made.values():
        fake.close()


@pytest.fixture
def settings(settings: Settings, fakes: dict[str, Any]) -> Settings:
    """One farm doing every kind of work a tenant can ask for, against local fakes."""
    return settings.replace(
        openai_base_url=fakes["llm"].base_url,
        openai_api_key="sk-farm",
        llm_model="m",
        whatsapp_api_base_url=fakes["whatsapp"].url,
        whatsapp_api_version=VERSION,
        whatsapp_token=TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret="farm-app-secret-walk",
        whatsapp_verify_token="farm-verify-token-walk",
        quiet_hours="off",
        embedding_backend="inference",
        embedding_inference_url=fakes["tei"].url,
        embedding_model=EMBEDDING_MODEL,
        scrape_allow_hosts=(f"{SITE_HOST}=127.0.0.1",),
        llm_allow_hosts=("127.0.0.1",),
        worker_queues=queues_except(settings, ()),
    )


class Tenant:
    """A tenant's backend: the app in-process with a key holding every scope a tenant may hold."""

    def __init__(self, api: TestClient[Any], settings: Settings, tenant: str) -> None:
        self.api, self.tenant = api, tenant
        secret = make_key(settings, *TENANT_SCOPES, name=f"{tenant} backend", tenant=tenant)
        self.headers = {"Authorization": f"Bearer {secret}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.request(method, path, headers=self.headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.call(method, path, **kwargs)
        assert answer.status_code in (200, 201, 204), (method, path, answer.text)
        return answer.json() if answer.content else None

    def job(self, type_: str, payload: dict[str, Any], **fields: Any) -> str:
        created = self.ok("POST", "/v1/jobs", json={"type": type_, "payload": payload, **fields})
        assert created["tenant"] == self.tenant
        return str(created["id"])


@dataclass
class World:
    """What a tenant owns, by the names the API uses for it."""

    tenant: str
    jobs: dict[str, str] = field(default_factory=dict)  # role -> job id
    schedule: str = ""
    chat: str = ""
    user: str = ""
    collection: str = ""
    scrape: str = ""
    outbound: str = ""
    recipient: str = ""
    business_key: str = ""
    idempotency_key: str = ""
    key_id: str = ""
    workflow: str = ""
    #: The chat of a customer's WhatsApp conversation with the tenant's number, flagged for a human.
    conversation: str = ""
    #: A webhook endpoint (never delivered to here: no scheduler runs), its deliveries pending.
    endpoint: str = ""
    hook_url: str = ""

    def secrets(self) -> set[str]:
        """Strings that are this tenant's alone: any of them in another tenant's answer is a leak."""
        found = {
            *self.jobs.values(),
            self.schedule,
            self.chat,
            self.collection,
            self.scrape,
            self.outbound,
            self.recipient,
            self.business_key,
            self.idempotency_key,
            self.key_id,
            self.workflow,
            self.conversation,
            self.endpoint,
            self.hook_url,
            A_MARKER,
            *NUMBERS[self.tenant][:3],
            LLM_KEYS[self.tenant],
        }
        return {s for s in found if s}


def _build(tenant: Tenant, wait_job: JobWaiter, fakes: dict[str, Any], marker: str) -> World:
    """One of everything ``tenant`` can own, made through the API and the farm's real workers."""
    t = tenant.tenant
    world = World(
        tenant=t,
        chat=f"{t}-chat",
        user=f"{t}-user",
        collection=f"{t}-products",
        recipient=A_RECIPIENT if t == A else B_RECIPIENT,
        business_key=f"{t}-order-7",
        idempotency_key=f"{t}-order-7-checkin",
    )
    phone_number_id, token, app_secret, verify_token = NUMBERS[t]
    # A public address literal: it passes the address guard with no DNS, and is never called.
    world.hook_url = f"https://93.184.215.14/{t}-hooks"
    hook = {"url": world.hook_url, "events": ["job.succeeded", "job.dead"]}
    world.endpoint = tenant.ok("POST", "/v1/webhook-endpoints", json=hook)["endpoint"]["id"]
    tenant.ok(
        "PUT",
        f"/v1/tenants/{t}/whatsapp",
        json={
            "phone_number_id": phone_number_id,
            "access_token": token,
            "app_secret": app_secret,
            "verify_token": verify_token,
        },
    )
    tenant.ok("PUT", f"/v1/tenants/{t}/llm", json=_chain(t, fakes["llm"]))
    tenant.ok("PUT", "/v1/assistants/whatsapp", json=_assistant(marker))
    # A customer of the tenant's number asks for a person: their conversation is flagged.
    asks = customer_message(
        world.recipient.lstrip("+"),
        "human please",
        message_id=f"wamid.{t}-human",
        phone_number_id=phone_number_id,
    )
    raw = json.dumps(asks).encode()
    headers = {"content-type": "application/json", "X-Hub-Signature-256": signature(app_secret, raw)}
    delivered = tenant.api.post("/webhooks/whatsapp", content=raw, headers=headers)
    assert delivered.status_code == 200 and delivered.json()["handoffs"] == 1, delivered.text
    (flagged,) = tenant.ok("GET", "/v1/chats")["items"]
    world.conversation = flagged["id"]
    world.jobs["scheduled"] = tenant.job(
        "test_effect",
        {"marker": marker},
        business_key=world.business_key,
        idempotency_key=world.idempotency_key,
        delay_seconds=86_400,
    )
    world.jobs["dead"] = tenant.job("test_flaky", DIES_AT_ONCE, business_key=f"{marker}-dead")
    world.jobs["reply"] = tenant.job(
        "ai_reply", {"chat_id": world.chat, "user_id": world.user, "message": f"{marker}: where is order 7?"}
    )
    world.jobs["embed"] = tenant.job(
        "embed",
        {"collection": world.collection, "documents": [{"id": f"{t}-doc", "text": f"{marker} red shoes"}]},
    )
    world.jobs["send"] = tenant.job("whatsapp_message", {"to": world.recipient, "text": f"{marker} hello"})
    world.jobs["scrape"] = tenant.job("scrape", {"url": f"http://{SITE_HOST}:{fakes['site'].port}/shot"})
    for role in ("reply", "embed", "send", "scrape"):
        wait_job(world.jobs[role], timeout=90)
    wait_job(world.jobs["dead"], "dead", timeout=30)
    world.scrape = tenant.ok("GET", f"/v1/jobs/{world.jobs['scrape']}")["result"]["scrape_id"]
    # A workflow whose first step is dead and whose second waits, blocked, holding the marker.
    workflow = tenant.ok(
        "POST",
        "/v1/workflows",
        json={
            "business_key": world.business_key,
            "idempotency_key": world.idempotency_key,
            "steps": {
                "first": {"type": "test_flaky", "payload": DIES_AT_ONCE},
                "then": {"type": "test_effect", "payload": {"marker": marker}, "after": ["first"]},
            },
        },
    )
    world.workflow = workflow["id"]
    world.jobs["workflow_first"] = workflow["steps"][0]["job_id"]
    wait_job(world.jobs["workflow_first"], "dead", timeout=30)
    (message,) = tenant.ok("GET", "/v1/outbound-messages")["items"]
    world.outbound = message["id"]
    world.schedule = tenant.ok(
        "POST",
        "/v1/schedules",
        json={"type": "test_effect", "payload": {"marker": marker}, "every_seconds": 86_400},
    )["id"]
    anchor = (utcnow() + timedelta(days=3)).isoformat()
    steps = [{"after_seconds": 86_400, "type": "test_effect", "payload": {"marker": marker}}]
    tenant.ok("POST", "/v1/sequences", json={"business_key": f"{t}-seq", "anchor_at": anchor, "steps": steps})
    tenant.ok("POST", "/v1/opt-outs", json={"to": "+14155550310" if t == A else "+14155550320"})
    world.key_id = tenant.ok("POST", "/v1/keys", json={"name": f"{t} spare", "scopes": ["jobs:read"]})["key"][
        "id"
    ]
    tenant.ok(
        "POST",
        "/v1/dead-letters/redrive",
        json={"ids": [world.jobs["dead"]], "reason": f"{t} looked", "dry_run": True},
    )
    return world


# --- what B's answers are compared by -------------------------------------------------------------


def _body(answer: Any) -> Any:
    """An answer's body: JSON where it is JSON, else its text (a screenshot's bytes as their length)."""
    if not answer.content:
        return None
    kind = answer.headers.get("content-type", "")
    if "json" in kind:
        return _stable(answer.json())
    if kind.startswith("image/"):
        return f"<{len(answer.content)} bytes>"
    return answer.text


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _differences(one: Any, other: Any, where: str = "") -> list[str]:
    """Where two answers' bodies differ, as paths into them (for a failure's message)."""
    if isinstance(one, dict) and isinstance(other, dict):
        return [
            d
            for k in one.keys() | other.keys()
            for d in _differences(one.get(k), other.get(k), f"{where}.{k}")
        ]
    if isinstance(one, list) and isinstance(other, list) and len(one) == len(other):
        return [
            d
            for i, (x, y) in enumerate(zip(one, other, strict=True))
            for d in _differences(x, y, f"{where}[{i}]")
        ]
    return [] if one == other else [f"{where}: {one!r} != {other!r}"[:300]]


def _masked(number: str) -> str:
    """A phone number as the API's messages show it (core/platform/redact.py)."""
    return f"{number[:3]}{'*' * (len(number) - 6)}{number[-3:]}"


def _swap(value: Any, old: str, new: str) -> Any:
    """``value`` with every ``old`` written as ``new`` (a request or an answer, for the ghost's)."""
    return json.loads(json.dumps(value).replace(old, new))


@dataclass
class Attack:
    """One operation called by B, naming one of A's objects (``target``) or none."""

    operation: str  # "METHOD /path/{param}" as the OpenAPI document writes it
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    #: A's value this request names, swapped for ``ghost`` to make the request for an object no one has.
    target: str | None = None
    ghost: str | None = None
    headers: dict[str, str] | None = None
    content: bytes | None = None

    def send(self, caller: Tenant, swap: tuple[str, str] | None = None) -> Any:
        path, body, params, content = self.path, self.json, self.params, self.content
        if swap:
            path = path.replace(*swap)
            body, params = _swap(body, *swap), _swap(params, *swap)
            content = content.replace(swap[0].encode(), swap[1].encode()) if content else None
        headers = {**caller.headers, **(self.headers or {})}
        if content is not None:
            return caller.api.request(self.operation.split()[0], path, headers=headers, content=content)
        return caller.api.request(self.operation.split()[0], path, headers=headers, json=body, params=params)


def _reads(a: World) -> list[Attack]:
    """B's reads of the farm as a whole: lists, counts, overviews, and A's client-chosen names (which
    before A's objects exist name nothing, like a ghost)."""
    job_filter = {"type": "test_effect", "business_key": a.business_key}
    looks = {"reason": "b looks", "dry_run": True}
    whatsapp_handshake = {
        "hub.mode": "subscribe",
        "hub.verify_token": "not-a-verify-token",
        "hub.challenge": "1",
    }
    return [
        Attack("GET /v1/jobs", "/v1/jobs"),
        Attack("GET /v1/jobs", "/v1/jobs", params=job_filter),
        Attack("GET /v1/jobs", "/v1/jobs", params={"status": "dead"}),
        Attack("GET /v1/jobs", "/v1/jobs", params={"queue": "test_effect"}),
        # A dry run over every job B reaches, and over A's business key: B's own jobs, or none.
        Attack("POST /v1/jobs/bulk", "/v1/jobs/bulk", json={"action": "cancel", "filter": {}, **looks}),
        Attack(
            "POST /v1/jobs/bulk",
            "/v1/jobs/bulk",
            json={"action": "retry", "filter": {"business_key": a.business_key}, **looks},
        ),
        Attack("GET /v1/dead-letters", "/v1/dead-letters"),
        Attack("GET /v1/dead-letters", "/v1/dead-letters", params={"type": "test_flaky", "q": A_MARKER}),
        Attack("GET /v1/audit", "/v1/audit"),
        Attack("GET /v1/schedules", "/v1/schedules"),
        Attack("GET /v1/workflows", "/v1/workflows", params={"business_key": a.business_key}),
        Attack("GET /v1/queues", "/v1/queues"),
        # A queue is every tenant's: B's key may not pause or resume it, before A exists or after.
        Attack("POST /v1/queues/{queue}/pause", "/v1/queues/test_effect/pause", json={"reason": "b pauses"}),
        Attack("POST /v1/queues/{queue}/resume", "/v1/queues/test_effect/resume", json={}),
        # Every worker, with B's own running jobs only (none while B reads).
        Attack("GET /v1/workers", "/v1/workers"),
        # Workers run every tenant's jobs: a tenant's key quiets none (403, whichever id it names).
        Attack(
            "POST /v1/workers/{worker_id}/quiet", "/v1/workers/any-worker/quiet", json={"reason": "b tries"}
        ),
        # Another tenant's events are an admin key's only (B's own stream: tests/integration/live/).
        Attack("GET /v1/events", "/v1/events", params={"tenant": A, "types": "job.succeeded"}),
        Attack("GET /v1/keys", "/v1/keys"),
        Attack("GET /v1/opt-outs", "/v1/opt-outs"),
        Attack("GET /v1/opt-outs/{number}", "/v1/opt-outs/+14155550310"),
        Attack("GET /v1/outbound-messages", "/v1/outbound-messages"),
        Attack("GET /v1/outbound-messages", "/v1/outbound-messages", params={"to": a.recipient}),
        Attack("GET /v1/unread", "/v1/unread", params={"user_id": a.user}),
        Attack("GET /v1/chats/{chat_id}/messages", f"/v1/chats/{a.chat}/messages"),
        Attack("GET /v1/collections/{name}", f"/v1/collections/{a.collection}"),
        Attack(
            "GET /v1/collections/{name}/search",
            f"/v1/collections/{a.collection}/search",
            params={"q": "shoes"},
        ),
        Attack("GET /v1/tenants/{tenant}/whatsapp", f"/v1/tenants/{A}/whatsapp"),
        Attack("GET /v1/tenants/{tenant}/limits", f"/v1/tenants/{A}/limits"),
        Attack("GET /v1/tenants/{tenant}/llm", f"/v1/tenants/{A}/llm"),
        Attack("GET /v1/chats", "/v1/chats"),
        Attack("GET /v1/assistants/whatsapp", "/v1/assistants/whatsapp"),
        Attack("GET /v1/webhook-endpoints", "/v1/webhook-endpoints"),
        Attack("GET /v1/webhook-deliveries", "/v1/webhook-deliveries"),
        Attack("GET /v1/webhook-deliveries", "/v1/webhook-deliveries", params={"status": "pending"}),
        Attack("GET /metrics", "/metrics"),
        Attack("GET /healthz", "/healthz"),
        Attack("GET /readyz", "/readyz"),
        Attack("GET /webhooks/whatsapp", "/webhooks/whatsapp", params=whatsapp_handshake),
    ]


def _by_id(a: World, llm: FakeOpenAI) -> list[Attack]:
    """B's requests naming one of A's objects, each answered as for a ghost of the same kind."""
    later = (utcnow() + timedelta(days=2)).isoformat()
    job, dead = a.jobs["scheduled"], a.jobs["dead"]

    def on(operation: str, path: str, target: str, ghost: str | None = None, **kw: Any) -> Attack:
        return Attack(operation, path, target=target, ghost=ghost or str(uuid.uuid4()), **kw)

    notification = customer_message(
        a.recipient.lstrip("+"),
        "STOP",
        message_id="wamid.walk",
        phone_number_id=NUMBERS[A][0],
        timestamp=1767225600,
    )
    raw = json.dumps(notification).encode()
    # Signed with B's own app secret: B knows its secret, never A's.
    signed = {"content-type": "application/json", "X-Hub-Signature-256": signature(NUMBERS[B][2], raw)}
    redrive = {"ids": [dead], "reason": "b tries", "dry_run": False}
    return [
        on("GET /v1/jobs/{job_id}", f"/v1/jobs/{job}", job),
        on("GET /v1/jobs/{job_id}", f"/v1/jobs/{job}", job, params={"wait": "1"}),
        on("GET /v1/jobs/{job_id}/attempts", f"/v1/jobs/{dead}/attempts", dead),
        on("GET /v1/workflows/{workflow_id}", f"/v1/workflows/{a.workflow}", a.workflow),
        on("POST /v1/jobs/{job_id}/reschedule", f"/v1/jobs/{job}/reschedule", job, json={"run_at": later}),
        on("POST /v1/jobs/{job_id}/cancel", f"/v1/jobs/{job}/cancel", job),
        on(
            "POST /v1/jobs/bulk", "/v1/jobs/bulk", job, json={"action": "cancel", "ids": [job], "reason": "b"}
        ),
        on(
            "POST /v1/jobs/bulk",
            "/v1/jobs/bulk",
            job,
            json={"action": "reschedule", "ids": [job], "run_at": later, "reason": "b"},
        ),
        on(
            "POST /v1/jobs/bulk",
            "/v1/jobs/bulk",
            job,
            json={"action": "retry", "ids": [job], "reason": "b", "dry_run": True},
        ),
        on(
            "POST /v1/jobs/cancel",
            "/v1/jobs/cancel",
            a.business_key,
            "ghost-order",
            json={"business_key": a.business_key},
        ),
        on("GET /v1/schedules/{schedule_id}", f"/v1/schedules/{a.schedule}", a.schedule),
        on(
            "PATCH /v1/schedules/{schedule_id}",
            f"/v1/schedules/{a.schedule}",
            a.schedule,
            json={"enabled": False},
        ),
        on("DELETE /v1/schedules/{schedule_id}", f"/v1/schedules/{a.schedule}", a.schedule),
        on("GET /v1/scrapes/{scrape_id}", f"/v1/scrapes/{a.scrape}", a.scrape),
        on("GET /v1/scrapes/{scrape_id}/screenshot", f"/v1/scrapes/{a.scrape}/screenshot", a.scrape),
        on("GET /v1/outbound-messages/{outbound_id}", f"/v1/outbound-messages/{a.outbound}", a.outbound),
        on(
            "POST /v1/outbound-messages/{outbound_id}/resolve",
            f"/v1/outbound-messages/{a.outbound}/resolve",
            a.outbound,
            json={"sent": True},
        ),
        on("GET /v1/keys/{key_id}", f"/v1/keys/{a.key_id}", a.key_id),
        on("POST /v1/keys/{key_id}/rotate", f"/v1/keys/{a.key_id}/rotate", a.key_id, json={}),
        on("POST /v1/keys/{key_id}/revoke", f"/v1/keys/{a.key_id}/revoke", a.key_id),
        on("POST /v1/dead-letters/redrive", "/v1/dead-letters/redrive", dead, json=redrive),
        on("POST /v1/dead-letters/discard", "/v1/dead-letters/discard", dead, json=redrive),
        on(
            "POST /v1/chats/{chat_id}/read",
            f"/v1/chats/{a.chat}/read",
            a.chat,
            "ghost-chat",
            json={"user_id": a.user},
        ),
        on("DELETE /v1/opt-outs/{number}", "/v1/opt-outs/+14155550310", "+14155550310", GHOST_RECIPIENT),
        on(
            "PUT /v1/tenants/{tenant}/whatsapp", f"/v1/tenants/{A}/whatsapp", A, GHOST_TENANT, json=_number(B)
        ),
        on("DELETE /v1/tenants/{tenant}/whatsapp", f"/v1/tenants/{A}/whatsapp", A, GHOST_TENANT),
        on("PUT /v1/tenants/{tenant}/llm", f"/v1/tenants/{A}/llm", A, GHOST_TENANT, json=_chain(B, llm)),
        on("DELETE /v1/tenants/{tenant}/llm", f"/v1/tenants/{A}/llm", A, GHOST_TENANT),
        on("GET /v1/chats/{chat_id}", f"/v1/chats/{a.conversation}", a.conversation),
        on("GET /v1/chats/{chat_id}", f"/v1/chats/{a.conversation}", A, GHOST_TENANT, params={"tenant": A}),
        on(
            "DELETE /v1/chats/{chat_id}/needs-human",
            f"/v1/chats/{a.conversation}/needs-human",
            a.conversation,
        ),
        on("GET /v1/assistants/whatsapp", "/v1/assistants/whatsapp", A, GHOST_TENANT, params={"tenant": A}),
        on(
            "PUT /v1/assistants/whatsapp",
            "/v1/assistants/whatsapp",
            A,
            GHOST_TENANT,
            params={"tenant": A},
            json=_assistant("b-marker"),
        ),
        on(
            "DELETE /v1/assistants/whatsapp", "/v1/assistants/whatsapp", A, GHOST_TENANT, params={"tenant": A}
        ),
        on(
            "PUT /v1/tenants/{tenant}/limits",
            f"/v1/tenants/{A}/limits",
            A,
            GHOST_TENANT,
            json={"max_queued": 1},
        ),
        on(
            "POST /v1/keys",
            "/v1/keys",
            A,
            GHOST_TENANT,
            json={"name": "b for a", "scopes": ["ops"], "tenant": A},
        ),
        on("POST /v1/opt-outs", "/v1/opt-outs", A, GHOST_TENANT, json={"to": GHOST_RECIPIENT, "tenant": A}),
        on("GET /v1/webhook-endpoints/{endpoint_id}", f"/v1/webhook-endpoints/{a.endpoint}", a.endpoint),
        on(
            "PATCH /v1/webhook-endpoints/{endpoint_id}",
            f"/v1/webhook-endpoints/{a.endpoint}",
            a.endpoint,
            json={"enabled": False},
        ),
        on(
            "POST /v1/webhook-endpoints/{endpoint_id}/rotate-secret",
            f"/v1/webhook-endpoints/{a.endpoint}/rotate-secret",
            a.endpoint,
            json={},
        ),
        on("DELETE /v1/webhook-endpoints/{endpoint_id}", f"/v1/webhook-endpoints/{a.endpoint}", a.endpoint),
        on(
            "GET /v1/webhook-deliveries",
            "/v1/webhook-deliveries",
            a.endpoint,
            params={"endpoint": a.endpoint},
        ),
        on(
            "POST /v1/webhook-deliveries/redrive",
            "/v1/webhook-deliveries/redrive",
            a.endpoint,
            json={"filter": {"endpoint": a.endpoint}, "reason": "b tries", "dry_run": False},
        ),
        # Meta's notifications: a STOP for A's recipient addressed to A's number, signed by B.
        on(
            "POST /webhooks/whatsapp",
            "/webhooks/whatsapp",
            NUMBERS[A][0],
            "300000000000999",
            headers=signed,
            content=raw,
        ),
    ]


def _chain(tenant: str, llm: FakeOpenAI) -> dict[str, Any]:
    provider = {"name": f"{tenant}-llm", "base_url": llm.base_url, "api_key": LLM_KEYS[tenant], "model": "m"}
    return {"providers": [provider]}


def _assistant(marker: str) -> dict[str, Any]:
    return {"system_prompt": f"{marker}: answer about shoes", "forbidden_phrases": [f"{marker} discount"]}


def _number(tenant: str) -> dict[str, str]:
    phone_number_id, token, app_secret, _ = NUMBERS[tenant]
    return {"phone_number_id": phone_number_id, "access_token": token, "app_secret": app_secret}


def _creates(a: World) -> list[Attack]:
    """B's requests that make B's own objects while naming A's keys and names: each must make a new
    object of B's, never find, join or change A's."""
    anchor = (utcnow() + timedelta(days=3)).isoformat()
    same_keys = {
        "business_key": a.business_key,
        "idempotency_key": a.idempotency_key,
        "delay_seconds": 86_400,
    }
    job = {"type": "test_effect", "payload": {"marker": "b"}, **same_keys}
    step = {
        "after_seconds": 60,
        "type": "test_effect",
        "payload": {"marker": "b"},
        "idempotency_key": a.idempotency_key,
    }
    schedule = {
        "type": "test_effect",
        "payload": {"marker": "b"},
        "every_seconds": 3600,
        "business_key": a.business_key,
    }
    return [
        Attack("POST /v1/jobs", "/v1/jobs", json=job),
        Attack("POST /v1/jobs/batch", "/v1/jobs/batch", json={"jobs": [job]}),
        Attack(
            "POST /v1/sequences",
            "/v1/sequences",
            json={"business_key": f"{A}-seq", "anchor_at": anchor, "steps": [step]},
        ),
        Attack("POST /v1/schedules", "/v1/schedules", json=schedule),
        Attack(
            "POST /v1/workflows",
            "/v1/workflows",
            json={
                "business_key": a.business_key,
                "idempotency_key": a.idempotency_key,
                "steps": {"first": {"type": "test_effect", "payload": {"marker": "b"}}},
            },
        ),
        Attack("POST /v1/opt-outs", "/v1/opt-outs", json={"to": "+14155550310"}),
        Attack("POST /v1/keys", "/v1/keys", json={"name": f"{A} spare", "scopes": ["jobs:read"]}),
        Attack(
            "POST /v1/webhook-endpoints",
            "/v1/webhook-endpoints",
            json={"url": a.hook_url, "events": ["job.succeeded"]},
        ),
        Attack(
            "POST /v1/dead-letters/redrive",
            "/v1/dead-letters/redrive",
            json={"filter": {"type": "test_flaky"}, "reason": "b redrives its own", "dry_run": True},
        ),
        Attack(
            "POST /v1/dead-letters/discard",
            "/v1/dead-letters/discard",
            json={"filter": {}, "reason": "b discards its own", "dry_run": True},
        ),
    ]


def _a_view(a_tenant: Tenant, a: World) -> dict[str, Any]:
    """Everything A reads of its own world, with its own key."""
    paths = [
        "/v1/jobs",
        *(f"/v1/jobs/{job_id}" for job_id in a.jobs.values()),
        f"/v1/jobs/{a.jobs['dead']}/attempts",
        "/v1/dead-letters",
        "/v1/audit",
        "/v1/schedules",
        f"/v1/schedules/{a.schedule}",
        f"/v1/workflows/{a.workflow}",
        f"/v1/workflows?business_key={a.business_key}",
        f"/v1/chats/{a.chat}/messages",
        f"/v1/unread?user_id={a.user}",
        f"/v1/collections/{a.collection}",
        f"/v1/collections/{a.collection}/search?q=shoes",
        f"/v1/scrapes/{a.scrape}",
        "/v1/outbound-messages",
        f"/v1/outbound-messages/{a.outbound}",
        "/v1/opt-outs",
        "/v1/keys",
        f"/v1/keys/{a.key_id}",
        f"/v1/tenants/{A}/whatsapp",
        f"/v1/tenants/{A}/limits",
        f"/v1/tenants/{A}/llm",
        "/v1/queues",
        "/v1/workers",
        "/v1/chats",
        f"/v1/chats/{a.conversation}",
        "/v1/assistants/whatsapp",
        f"/v1/webhook-endpoints/{a.endpoint}",
        f"/v1/webhook-deliveries?endpoint={a.endpoint}",
    ]
    return {path: _body(a_tenant.call("GET", path)) for path in paths}


def _leaks(answer: Any, secrets: set[str], sent: str) -> set[str]:
    """A's strings in ``answer`` that the request did not carry itself."""
    text = answer.content.decode("utf-8", "replace") if answer.content else ""
    return {s for s in secrets if s in text and s not in sent}


def test_no_operation_lets_one_tenant_read_change_or_learn_of_anothers_objects(
    api: TestClient[Any], farm: Farm, settings: Settings, fakes: dict[str, Any], wait_job: JobWaiter
) -> None:
    farm.worker(threads=4)  # every queue: ai_reply, embed, whatsapp, scrape and the test types
    a_tenant, b_tenant = Tenant(api, settings, A), Tenant(api, settings, B)
    b_world = _build(b_tenant, wait_job, fakes, "b-marker")
    a_names = World(
        tenant=A, chat=f"{A}-chat", user=f"{A}-user", collection=f"{A}-products", recipient=A_RECIPIENT
    )
    a_names.business_key = f"{A}-order-7"

    # Before A exists: what B reads of the farm, A's client-chosen names included.
    before = [(attack, attack.send(b_tenant)) for attack in _reads(a_names)]
    a = _build(a_tenant, wait_job, fakes, A_MARKER)
    assert api.put(f"/v1/tenants/{A}/limits", json={"max_queued": 10_000}).status_code == 200
    a_before = _a_view(a_tenant, a)
    secrets = a.secrets() - b_world.secrets()
    walked: set[str] = set()

    def checked(attack: Attack, answer: Any) -> Any:
        walked.add(attack.operation)
        sent = f"{attack.path} {json.dumps(attack.json)} {json.dumps(attack.params)} {attack.content!r}"
        leaked = _leaks(answer, secrets, sent)
        assert not leaked, (attack.operation, attack.path, leaked, answer.text[:500])
        assert answer.status_code < 500, (attack.operation, answer.text)
        return answer

    # Reads: the same answers as before A's objects existed.
    for attack, earlier in before:
        answer = checked(attack, attack.send(b_tenant))
        assert (answer.status_code, _body(answer)) == (earlier.status_code, _body(earlier)), (
            attack.operation,
            attack.params,
            _differences(_body(answer), _body(earlier)),
        )

    # Requests naming A's objects: each answered exactly as for a ghost of the same kind.
    for attack in _by_id(a, fakes["llm"]):
        assert attack.target and attack.ghost
        answer = checked(attack, attack.send(b_tenant))
        ghost = attack.send(b_tenant, swap=(attack.target, attack.ghost))
        expected = _swap(_body(ghost), attack.ghost, attack.target)
        if attack.target.startswith("+"):  # a phone number, which messages show masked
            expected = _swap(expected, _masked(attack.ghost), _masked(attack.target))
        assert (answer.status_code, _body(answer)) == (ghost.status_code, expected), (
            attack.operation,
            answer.status_code,
            ghost.status_code,
            _differences(_body(answer), expected),
        )

    # Requests making B's own objects under A's names and keys: new objects of B's, none of A's.
    for attack in _creates(a):
        answer = checked(attack, attack.send(b_tenant))
        assert answer.status_code in (200, 201), (attack.operation, answer.text)
        made = json.dumps(answer.json())
        assert f'"tenant": "{A}"' not in made, (attack.operation, made)
    redriven = b_tenant.ok(
        "POST", "/v1/dead-letters/redrive", json={"filter": {}, "reason": "b counts", "dry_run": True}
    )
    assert sorted(j["id"] for j in redriven["preview"]) == sorted(
        [b_world.jobs["dead"], b_world.jobs["workflow_first"]]
    )

    # A's world is as A left it.
    assert _a_view(a_tenant, a) == a_before
    # A's reply went to A's own provider key; and nothing was sent to A's recipient but A's message.
    assert f"Bearer {LLM_KEYS[A]}" in fakes["llm"].authorizations
    sent_to_a = fakes["whatsapp"].requests(A_RECIPIENT)
    assert [(r.number, r.authorization) for r in sent_to_a] == [(NUMBERS[A][0], f"Bearer {NUMBERS[A][1]}")]
    assert walked == _operations(api)


def _operations(api: TestClient[Any]) -> set[str]:
    document = api.get("/schema/openapi.json").json()
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_the_walk_covers_every_operation(api: TestClient[Any], fakes: dict[str, Any]) -> None:
    """Without the farm: the walk's attacks name exactly the operations the OpenAPI document has."""
    world = World(
        tenant=A,
        jobs={"scheduled": "j", "dead": "d"},
        schedule="s",
        chat="c",
        collection="c",
        scrape="s",
        outbound="o",
        recipient=A_RECIPIENT,
        business_key="b",
        idempotency_key="i",
        key_id="k",
    )
    named = {attack.operation for attack in (*_reads(world), *_by_id(world, fakes["llm"]), *_creates(world))}
    assert named == _operations(api)
