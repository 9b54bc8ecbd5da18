"""Personal data and secrets, through a real API process and a real worker process: sends through the
fake WhatsApp Cloud API, a STOP by webhook, a dead letter redriven to another number, opt-outs, a
schedule, an AI reply, and a careless handler that logs secrets. Afterwards no column of any table
holds a phone number in clear, numbers are still found by their keyed hash, and no log line of
either process holds a key, a token, a message body or a number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.messaging.outbound import TO_CONTEXT
from core.messaging.webhook import signature
from core.platform.crypto import data_cipher
from core.platform.db import transaction
from core.platform.settings import Settings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, FakeWhatsApp
from tests.integration.conftest import Farm, sending_to
from tests.services import wait_for

APP_SECRET = "app-secret-for-the-redaction-test"
VERIFY_TOKEN = "verify-token-for-the-redaction-test"
OPENAI_KEY = "sk-redactiontest0123456789abcdef"
SENT, STOPPED, REDRIVEN, API_OPT_OUT, SCHEDULED, LEAKY = (
    "+447700900111",
    "+447700900222",
    "+447700900555",
    "+447700900333",
    "+447700900444",
    "+447700900666",
)
NUMBERS = (SENT, STOPPED, REDRIVEN, API_OPT_OUT, SCHEDULED, LEAKY)
BODIES = ("Your parcel A-17 left the depot", "What is my secret order status?", "Wintersale for Bob")


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("assistant")
    yield fake
    fake.close()


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp, openai: FakeOpenAI) -> Settings:
    return sending_to(
        settings,
        whatsapp,
        APP_SECRET,
        whatsapp_verify_token=VERIFY_TOKEN,
        openai_base_url=openai.base_url,
        openai_api_key=OPENAI_KEY,
        worker_queues=("whatsapp_message", "ai_reply", "test_leaky"),
    )


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        r = self.client.request(method, path, **kwargs)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def enqueue(self, type_: str, **payload: Any) -> str:
        return str(self.ok("POST", "/v1/jobs", 201, json={"type": type_, "payload": payload})["id"])

    def wait(self, job_id: str, *statuses: str) -> dict[str, Any]:
        wanted = statuses or ("succeeded",)

        def done() -> dict[str, Any] | None:
            job: dict[str, Any] = self.ok("GET", f"/v1/jobs/{job_id}")
            return job if job["status"] in wanted else None

        return wait_for(done, timeout=60, interval=0.05, what=f"job {job_id} {wanted}")  # type: ignore[no-any-return]


def _stop_from(number: str) -> bytes:
    message = {
        "from": number.lstrip("+"),
        "id": "wamid.in1",
        "timestamp": "1767225600",
        "type": "text",
        "text": {"body": "STOP"},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"phone_number_id": PHONE_NUMBER_ID},
        "messages": [message],
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "W", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body).encode()


def columns_holding(settings: Settings, needles: list[str]) -> list[str]:
    """Every text or JSON column of every table whose values contain one of ``needles``."""
    found = []
    with transaction(settings) as conn:
        columns = conn.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'ARRAY')"
            )
        ).all()
        for table, column in columns:
            for needle in needles:
                hit = conn.execute(
                    sa.text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :pattern'),
                    {"pattern": f"%{needle}%"},
                ).scalar_one()
                if hit:
                    found.append(f"{table}.{column} holds {needle}")
    return found


def test_no_number_in_clear_at_rest_found_by_keyed_hash_and_no_secret_in_logs(
    settings: Settings,
    farm: Farm,
    admin_key: str,
    whatsapp: FakeWhatsApp,
    openai: FakeOpenAI,
    request: pytest.FixtureRequest,
) -> None:
    api_process, base = farm.api()
    worker = farm.worker()
    api = Api(base, admin_key)
    request.addfinalizer(api.client.close)
    reader = api.ok("POST", "/v1/keys", 201, json={"name": "reader", "scopes": ["jobs:read"]})["secret"]

    # A text message goes out, to the number in clear as WhatsApp needs it.
    sent = api.wait(api.enqueue("whatsapp_message", to=SENT, text=BODIES[0]))
    assert sent["payload"]["to"] == "+44*******111"
    (request,) = whatsapp.requests(SENT)
    assert request.body["to"] == SENT and request.body["text"] == {"body": BODIES[0]}

    # STOP by webhook: a send to that number is refused, found by the number's keyed hash.
    raw = _stop_from(STOPPED)
    headers = {"content-type": "application/json", "X-Hub-Signature-256": signature(APP_SECRET, raw)}
    assert httpx.post(f"{base}/webhooks/whatsapp", content=raw, headers=headers).json()["opt_outs"] == 1
    dead = api.wait(api.enqueue("whatsapp_message", to=STOPPED, text=BODIES[2]), "dead")
    assert dead["error"]["code"] == "opted_out" and "+44*******222" in dead["error"]["message"]
    assert api.ok("GET", f"/v1/opt-outs/{STOPPED}")["source"] == "webhook"

    # The dead letter is redriven to another number (the patch is applied in clear, stored sealed).
    redrive = {
        "ids": [dead["id"]],
        "reason": f"customer moved to {REDRIVEN}",
        "payload_patch": {"to": REDRIVEN},
    }
    assert api.ok("POST", "/v1/dead-letters/redrive", json=redrive)["redriven"] == 1
    api.wait(dead["id"])
    assert [r.body["to"] for r in whatsapp.requests(REDRIVEN)] == [REDRIVEN]

    # An opt-out by API, found and removed by number; a send to it then works again.
    api.ok("POST", "/v1/opt-outs", 201, json={"to": API_OPT_OUT, "reason": f"called from {API_OPT_OUT}"})
    assert api.ok("GET", f"/v1/opt-outs/{API_OPT_OUT}")["address"] == API_OPT_OUT
    api.ok("DELETE", f"/v1/opt-outs/{API_OPT_OUT}", 204)
    api.wait(api.enqueue("whatsapp_message", to=API_OPT_OUT, text="back again"))

    # Outbound messages are found by number (its keyed hash) and show it masked.
    (message,) = api.ok("GET", "/v1/outbound-messages", params={"to": SENT})["items"]
    assert message["to"] == "+44*******111" and message["body"]["to"] == "+44*******111"

    # A schedule holding a number, an AI reply, and a handler that logs what it should not.
    schedule = {
        "type": "whatsapp_message",
        "payload": {"to": SCHEDULED, "text": "weekly"},
        "every_seconds": 604800,
    }
    schedule["start_at"] = (datetime.now(UTC) + timedelta(days=3000)).isoformat()
    assert api.ok("POST", "/v1/schedules", 201, json=schedule)["payload"]["to"] == "+44*******444"
    api.wait(api.enqueue("ai_reply", chat_id="c1", user_id="u1", message=BODIES[1]))
    assert openai.requests[0]["messages"][-1]["content"] == BODIES[1]
    leaky = api.enqueue("test_leaky", to=LEAKY, text=BODIES[2], api_key=reader)
    assert api.wait(leaky, "dead")["error"]["code"] == "unexpected_error"
    assert (
        httpx.get(
            f"{base}/v1/jobs", headers={"Authorization": "Bearer jy_notarealkeybutlooksone"}
        ).status_code
        == 401
    )

    # At rest: no number in any column of any table, with or without its plus.
    assert columns_holding(settings, [n.lstrip("+") for n in NUMBERS]) == []
    with transaction(settings) as conn:
        sealed = conn.execute(sa.text("SELECT to_sealed, to_hash FROM outbound_messages LIMIT 1")).one()
    assert sealed.to_sealed.startswith(f"jy2:{data_cipher().key_id}:") and len(sealed.to_hash) == 64
    assert data_cipher().open(sealed.to_sealed, TO_CONTEXT) in NUMBERS

    # In the logs of both processes: nothing secret, no body, no number; but the lines are there.
    worker.stop()
    api_process.stop()
    logs = {"api": api_process.log(), "worker": worker.log()}
    secrets = [admin_key, reader, TOKEN, APP_SECRET, VERIFY_TOKEN, OPENAI_KEY, settings.data_key or "?"]
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} log holds a secret {secret[:6]}..."
        for body in [*BODIES, "assistant says"]:
            assert body not in text, f"{name} log holds a message body {body!r}"
        for number in NUMBERS:
            assert number.lstrip("+") not in text, f"{name} log holds {number}"
    worker_log = logs["worker"]
    assert '"event": "whatsapp_sent"' in worker_log and "leaky_payload" in worker_log
    assert "+44*******666" in worker_log and reader[:10] + "...[redacted]" in worker_log
    assert '"Authorization": "[redacted]"' in worker_log and "could not reach +44*******666" in worker_log
    assert "whatsapp_opt_out" in logs["api"] and "+44*******222" in logs["api"]
