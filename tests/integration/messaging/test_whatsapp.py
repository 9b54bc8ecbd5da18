"""`whatsapp_message` against a fake WhatsApp Cloud API: sends, dry runs, Graph errors, the shared
rate limit, never twice across a SIGKILL, opt-outs, delivery statuses by webhook, quiet hours."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import TestClient

from control_api.app import create_app
from core.messaging.webhook import signature
from core.platform.settings import Settings
from tests.fakes.whatsapp import (
    PHONE_NUMBER_ID,
    TOKEN,
    VERSION,
    FakeWhatsApp,
    GraphFail,
    Stall,
    customer_message,
    notification,
)
from tests.integration.conftest import Farm, JobWaiter, make_key, sending_to
from tests.services import wait_for

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
KOLKATA = ZoneInfo("Asia/Kolkata")


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp) -> Settings:
    """The test's farm, sending to the fake Cloud API. Quiet hours are off unless a test turns them
    on: the tests run at any hour of the day."""
    return sending_to(settings, whatsapp, APP_SECRET, whatsapp_verify_token=VERIFY_TOKEN)


def _send(api: TestClient[Any], to: str, *, run_at: datetime | None = None, **payload: Any) -> str:
    body: dict[str, Any] = {"type": "whatsapp_message", "payload": {"to": to, **payload}}
    if run_at is not None:
        body["run_at"] = run_at.isoformat()
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def _attempts(api: TestClient[Any], job_id: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/jobs/{job_id}/attempts").json()["items"]  # type: ignore[no-any-return]


def _outbound(api: TestClient[Any], job_id: str) -> list[dict[str, Any]]:
    r = api.get("/v1/outbound-messages", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    return sorted(r.json()["items"], key=lambda m: m["attempt"])


def _webhook(client: TestClient[Any], body: dict[str, Any], sig: str | None = "sign") -> Any:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if sig == "sign":
        headers["X-Hub-Signature-256"] = signature(APP_SECRET, raw)
    elif sig is not None:
        headers["X-Hub-Signature-256"] = sig
    return client.post("/webhooks/whatsapp", content=raw, headers=headers)


def _change(value: dict[str, Any]) -> dict[str, Any]:
    return notification(value)


def _incoming(wa_id: str, text: str) -> dict[str, Any]:
    return customer_message(wa_id, text, timestamp=1767225600)


def _statuses(*items: dict[str, Any]) -> dict[str, Any]:
    return _change({"statuses": list(items)})


def _status(message_id: str, status: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "status": status,
        "timestamp": str(int(at.timestamp())),
        "recipient_id": "1",
        **extra,
    }


def test_template_and_text_messages_go_out_once_as_the_cloud_api_expects(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    template = {
        "name": "order_shipped",
        "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-17"}]}],
    }
    t_job = _send(api, "+14155550101", template=template)
    x_job = _send(api, "+14155550102", text="Your parcel is on its way")

    for job_id, to in ((t_job, "+14155550101"), (x_job, "+14155550102")):
        done = wait_job(job_id, timeout=60)
        (request,) = whatsapp.requests(to)
        assert request.path == f"/{VERSION}/{PHONE_NUMBER_ID}/messages"
        assert request.authorization == f"Bearer {TOKEN}"
        (message,) = _outbound(api, job_id)
        assert done["result"] == {
            "outbound_id": message["id"],
            "status": "sent",
            "provider_message_id": request.message_id,
        }
        assert (message["status"], message["provider_message_id"], message["attempt"]) == (
            "sent",
            request.message_id,
            1,
        )
        # The API shows what was sent with the recipient masked; Postgres holds it sealed.
        masked = "+14******" + to[-3:]
        assert message["sent_at"] is not None and message["body"] == {**request.body, "to": masked}
        assert message["to"] == masked
        assert request.body["biz_opaque_callback_data"] == message["id"]

    t_body = whatsapp.requests("+14155550101")[0].body
    assert {k: t_body[k] for k in ("messaging_product", "to", "type", "template")} == {
        "messaging_product": "whatsapp",
        "to": "+14155550101",
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": template["components"],
        },
    }
    x_body = whatsapp.requests("+14155550102")[0].body
    assert (x_body["type"], x_body["text"]) == ("text", {"body": "Your parcel is on its way"})
    assert len(whatsapp.requests()) == 2


def test_without_a_token_a_send_is_an_explicit_dry_run(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.settings = farm.settings.replace(whatsapp_token=None)
    worker = farm.worker()
    job_id = _send(api, "+14155550103", text="hello")
    done = wait_job(job_id, timeout=60)
    (message,) = _outbound(api, job_id)
    assert done["result"] == {"outbound_id": message["id"], "status": "dry_run", "provider_message_id": None}
    assert message["status"] == "dry_run"
    assert whatsapp.requests() == []
    line = next(json.loads(x) for x in worker.log().splitlines() if '"whatsapp_dry_run"' in x)
    assert line["level"] == "warning" and "DRY RUN" in line["detail"] and line["job_id"] == job_id


def test_graph_errors_rate_limit_then_send_dead_letter_or_retry(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    farm.scheduler()
    whatsapp.script("+14155550111", GraphFail(429, 130429, "Rate limit hit", retry_after=1))
    whatsapp.script("+14155550112", GraphFail(400, 131026, "Message undeliverable"))
    whatsapp.script("+14155550113", GraphFail(500, 131000, "Something went wrong"))
    limited = _send(api, "+14155550111", text="a")
    undeliverable = _send(api, "+14155550112", text="b")
    broken = _send(api, "+14155550113", text="c")

    dead = wait_job(undeliverable, "dead", timeout=60)
    assert (dead["error"]["code"], dead["error"]["retryable"], dead["attempts"]) == (
        "message_undeliverable",
        False,
        1,
    )
    assert "Graph error 131026" in dead["error"]["message"]
    assert [m["status"] for m in _outbound(api, undeliverable)] == ["failed"]
    assert len(whatsapp.requests("+14155550112")) == 1

    done = wait_job(limited, timeout=60)
    assert [a["outcome"] for a in _attempts(api, limited)] == ["rate_limited", "succeeded"]
    first, second = whatsapp.requests("+14155550111")
    assert second.at - first.at >= 5.0  # Retry-After 1 s, raised to the type's minimum backoff
    assert done["result"]["status"] == "sent"

    done = wait_job(broken, timeout=60)
    attempts = _attempts(api, broken)
    assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
    assert attempts[0]["error"]["code"] == "provider_unavailable"
    assert [m["status"] for m in _outbound(api, broken)] == ["failed", "sent"]


def test_the_rate_per_number_is_shared_by_every_worker_thread(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.settings = farm.settings.replace(whatsapp_rate_per_s=2.0)
    farm.worker(processes=2, threads=4)
    farm.scheduler()
    jobs = [_send(api, f"+1415555012{i}", text="sale") for i in range(6)]
    for job_id in jobs:
        wait_job(job_id, timeout=90)
    times = sorted(r.at for r in whatsapp.requests())
    assert len(times) == 6
    # Slots are 0.5 s apart and a request never goes before its slot, so the k-th request comes at
    # least k * 0.5 s after the first, less however late the first one was (its HTTP round trip).
    # Without the limit, eight threads would send all six within a few milliseconds.
    late = [round(k * 0.5 - (t - times[0]), 3) for k, t in enumerate(times)]
    assert max(late) <= 0.3, late


def test_a_worker_killed_mid_send_never_sends_twice(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.settings = farm.settings.replace(worker_dead_after_s=3.0, worker_heartbeat_s=0.5)
    first_worker = farm.worker()
    farm.scheduler()
    # WhatsApp records (accepts) each message, then holds its answer: the worker dies waiting.
    settled_to, resent_to = "+14155550131", "+14155550132"
    whatsapp.script(settled_to, Stall(60))
    whatsapp.script(resent_to, Stall(60))
    settled, resent = _send(api, settled_to, text="x"), _send(api, resent_to, text="y")
    wait_for(lambda: len(whatsapp.requests()) == 2, timeout=60, what="both requests to reach WhatsApp")
    os.kill(int(_attempts(api, settled)[0]["worker"].split(":")[1]), signal.SIGKILL)
    wait_for(lambda: not first_worker.alive(), timeout=30, what="the dramatiq master to exit")
    farm.worker()  # the process manager's restart

    for job_id in (settled, resent):
        dead = wait_job(job_id, "dead", timeout=90)
        assert dead["error"]["code"] == "unknown_outcome"
        assert [a["outcome"] for a in _attempts(api, job_id)] == ["lost", "failed"]
        assert [m["status"] for m in _outbound(api, job_id)] == ["pending"]
    assert len(whatsapp.requests(settled_to)) == len(whatsapp.requests(resent_to)) == 1  # never twice

    # A delivery status names the message by the outbound id we sent along: that send did go out,
    # and redriving the job completes it without sending again.
    (pending,) = _outbound(api, settled)
    wamid = whatsapp.requests(settled_to)[0].message_id
    assert wamid is not None
    delivered = _status(wamid, "delivered", datetime.now(UTC), biz_opaque_callback_data=pending["id"])
    assert _webhook(public, _statuses(delivered)).json()["statuses"] == 1
    redrive = {"ids": [settled], "reason": "WhatsApp says it was delivered"}
    assert api.post("/v1/dead-letters/redrive", json=redrive).json()["redriven"] == 1
    done = wait_job(settled, timeout=60)
    assert done["result"] == {"outbound_id": pending["id"], "status": "sent", "provider_message_id": wamid}
    assert len(whatsapp.requests(settled_to)) == 1

    # The other one a human checks and finds not sent: resolved as such, the redrive sends it.
    (pending,) = _outbound(api, resent)
    r = api.post(
        f"/v1/outbound-messages/{pending['id']}/resolve", json={"sent": False, "note": "never arrived"}
    )
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    assert api.post(f"/v1/outbound-messages/{pending['id']}/resolve", json={"sent": True}).status_code == 409
    api.post("/v1/dead-letters/redrive", json={"ids": [resent], "reason": "checked: not sent"})
    done = wait_job(resent, timeout=60)
    assert done["result"]["status"] == "sent"
    assert len(whatsapp.requests(resent_to)) == 2


def test_stop_by_webhook_opts_the_number_out(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    # A forged or unsigned STOP is refused and records nothing.
    forged = _webhook(public, _incoming("14155550141", "STOP"), sig="sha256=" + "0" * 64)
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"
    assert _webhook(public, _incoming("14155550141", "STOP"), sig=None).status_code == 401
    assert api.get("/v1/opt-outs").json()["items"] == []

    r = _webhook(public, _incoming("14155550141", "Stop"))
    assert r.status_code == 200 and r.json()["opt_outs"] == 1, r.text
    assert _webhook(public, _incoming("14155550142", "stop sending the blue one?")).json()["opt_outs"] == 0
    (opt_out,) = api.get("/v1/opt-outs").json()["items"]
    assert (opt_out["address"], opt_out["source"]) == ("+14155550141", "webhook")

    farm.worker()
    dead = wait_job(_send(api, "+14155550141", text="20% off"), "dead", timeout=60)
    assert (dead["error"]["code"], dead["attempts"]) == ("opted_out", 1)
    assert whatsapp.requests() == []


def test_delivery_statuses_move_the_message_forward_only(
    api: TestClient[Any], public: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    job_id = _send(api, "+14155550151", text="hi")
    wamid = wait_job(job_id, timeout=60)["result"]["provider_message_id"]
    t = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    body = _statuses(
        _status(wamid, "delivered", t),
        _status(wamid, "read", t + timedelta(minutes=5)),
        _status(wamid, "delivered", t + timedelta(minutes=9)),  # late and out of order
        _status(wamid, "failed", t + timedelta(minutes=10)),  # cannot undo a read
        _status("wamid.someone-else", "read", t),
    )
    assert _webhook(public, body).json() == {
        "statuses": 4,
        "unknown_statuses": 1,
        "opt_outs": 0,
        "messages": 0,
        "auto_replies": 0,
        "handoffs": 0,
    }
    (message,) = _outbound(api, job_id)
    assert message["status"] == "read"
    assert datetime.fromisoformat(message["delivered_at"]) == t
    assert datetime.fromisoformat(message["read_at"]) == t + timedelta(minutes=5)


def test_the_webhook_handshake_and_an_unconfigured_webhook(
    public: TestClient[Any], settings: Settings
) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    r = public.get("/webhooks/whatsapp", params=params)
    assert (r.status_code, r.text) == (200, "1158201444")
    assert r.headers["content-type"].startswith("text/plain")
    assert public.get("/webhooks/whatsapp", params={**params, "hub.verify_token": "guess"}).status_code == 403
    assert public.get("/webhooks/whatsapp", params={**params, "hub.mode": "unsubscribe"}).status_code == 403

    bare = settings.replace(whatsapp_app_secret=None, whatsapp_verify_token=None)
    with TestClient(create_app(bare, configure_logs=False)) as client:
        r = _webhook(client, _incoming("14155550161", "STOP"))
        assert (r.status_code, r.json()["error"]["code"]) == (503, "webhook_not_configured")
        assert client.get("/webhooks/whatsapp", params=params).status_code == 503


def test_opt_outs_by_api(api: TestClient[Any], settings: Settings) -> None:
    writer = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', name='shop')}"}
    r = api.post("/v1/opt-outs", json={"to": "+14155550171", "reason": "asked by phone"}, headers=writer)
    assert r.status_code == 201, r.text
    assert (r.json()["source"], r.json()["reason"]) == ("api", "asked by phone")
    assert api.post("/v1/opt-outs", json={"to": "+14155550171"}, headers=writer).status_code == 200
    bad = api.post("/v1/opt-outs", json={"to": "4155550171"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "to"
    assert api.get("/v1/opt-outs", headers=writer).status_code == 403  # listing and removing need ops
    assert api.delete("/v1/opt-outs/+14155550171", headers=writer).status_code == 403

    api.post("/v1/opt-outs", json={"to": "+14155550172"})
    page = api.get("/v1/opt-outs", params={"limit": 1}).json()
    assert [o["address"] for o in page["items"]] == ["+14155550172"]
    rest = api.get("/v1/opt-outs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [o["address"] for o in rest["items"]] == ["+14155550171"] and rest["next_cursor"] is None

    assert api.delete("/v1/opt-outs/%2B14155550171").status_code == 204
    assert api.delete("/v1/opt-outs/14155550171").json()["error"]["code"] == "opt_out_not_found"


def _offset_to(farm_time: datetime) -> float:
    """JOBYARD_CLOCK_OFFSET_S that makes the farm's clock read ``farm_time`` now."""
    return (farm_time - datetime.now(UTC)).total_seconds()


def test_a_send_due_at_23_00_recipient_time_goes_out_at_09_00(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    local_now = datetime.now(KOLKATA)
    evening = datetime.combine(local_now.date(), time(22, 59, 58), tzinfo=KOLKATA)
    if evening <= local_now:
        evening += timedelta(days=1)  # Kolkata keeps no DST: a day is 24 h
    eleven = evening + timedelta(seconds=2)
    morning = datetime.combine(evening.date() + timedelta(days=1), time(9, 0), tzinfo=KOLKATA)

    # The farm's clock at 22:59:58 in Kolkata; the message is due at 23:00, inside 21:00-09:00.
    farm.settings = farm.settings.replace(quiet_hours="21:00-09:00", clock_offset_s=_offset_to(evening))
    job_id = _send(api, "+919876543210", text="Your order shipped", timezone="Asia/Kolkata", run_at=eleven)
    farm.worker()
    farm.scheduler()
    job = wait_job(job_id, "retrying", timeout=60)
    assert datetime.fromisoformat(job["run_at"]) == morning
    assert job["error"]["code"] == "postponed"
    assert [a["outcome"] for a in _attempts(api, job_id)] == ["postponed"]
    assert whatsapp.requests() == [] and _outbound(api, job_id) == []

    for proc in farm.processes:
        proc.stop()
    # The next morning: the farm's clock a little before 09:00 in Kolkata (a worker and a scheduler
    # start in ~3 s: the job is seen still waiting before 09:00, then sent at 09:00).
    offset = _offset_to(morning - timedelta(seconds=8))
    farm.settings = farm.settings.replace(clock_offset_s=offset)
    farm.worker()
    farm.scheduler()
    if datetime.now(UTC) + timedelta(seconds=offset) < morning - timedelta(seconds=1):
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "retrying"
        assert whatsapp.requests() == []
    done = wait_job(job_id, timeout=60)
    (request,) = whatsapp.requests()
    sent_at = datetime.fromtimestamp(request.at + offset, UTC)  # the fake's clock read as the farm's
    assert sent_at >= morning, sent_at.astimezone(KOLKATA)
    assert done["result"]["status"] == "sent"
    assert [a["outcome"] for a in _attempts(api, job_id)] == ["postponed", "succeeded"]
    assert done["attempts"] == 2


def test_a_cancel_during_a_send_lets_the_send_finish_once(
    api: TestClient[Any], farm: Farm, whatsapp: FakeWhatsApp, wait_job: JobWaiter
) -> None:
    farm.worker()
    # WhatsApp records the message, then takes 2 s to answer: the cancel comes while it waits.
    to = "+14155550141"
    whatsapp.script(to, Stall(2))
    job_id = _send(api, to, text="on its way")
    wait_for(lambda: whatsapp.requests(to), timeout=30, what="the send to reach WhatsApp")
    asked = api.post(f"/v1/jobs/{job_id}/cancel")
    assert asked.status_code == 202, asked.text
    # Handed to WhatsApp: not aborted (it could not be known sent or unsent), so it finishes.
    done = wait_job(job_id, "succeeded", "cancelled", "dead", timeout=30)
    assert done["status"] == "succeeded" and done["result"]["status"] == "sent", done
    assert [m["status"] for m in _outbound(api, job_id)] == ["sent"]
    assert len(whatsapp.requests(to)) == 1
