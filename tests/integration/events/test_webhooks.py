"""Signed completion webhooks, end to end: API, worker and scheduler processes, a local receiver that
verifies every delivery with the Standard Webhooks reference library (issue 21, Done-when 1)."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any

import httpx

from core.access.keys import SCOPES
from core.platform.settings import Settings
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.fakes.whatsapp import FakeWhatsApp
from tests.integration.conftest import make_key, sending_to
from tests.integration.events.conftest import HookedFarm, deliveries, enqueue, register
from tests.services import wait_for


def _all_delivered(client: httpx.Client, **query: str) -> list[dict[str, Any]] | None:
    log = deliveries(client, **query)
    return log if {d["status"] for d in log} == {"delivered"} else None


def test_a_hundred_jobs_make_exactly_a_hundred_signed_deliveries(
    hooked_farm: HookedFarm, receiver: WebhookReceiver
) -> None:
    client = hooked_farm()
    endpoint = register(client, receiver, ["job.succeeded"])
    ids = enqueue(client, [{"type": "test_echo", "payload": {"value": i}} for i in range(100)])

    wait_for(lambda: len(receiver.received) >= 100, timeout=60, what="100 deliveries")
    got = receiver.of_type("job.succeeded")
    assert sorted(b["data"]["id"] for b in got) == sorted(ids)  # each job once, none lost
    assert all(b["data"]["status"] == "succeeded" and b["data"]["tenant"] == "shop-a" for b in got)
    assert {b["data"]["result"]["value"] for b in got} == set(range(100))  # the job as GET shows it
    assert receiver.rejected == []
    job = client.get(f"/v1/jobs/{ids[0]}").json()
    sent = next(b for b in got if b["data"]["id"] == ids[0])
    assert sent["data"] == job
    # The farm records what the receiver answered a moment after it answered.
    log = wait_for(lambda: _all_delivered(client, endpoint=endpoint["id"]), what="the log to show it")
    assert len(log) == 100
    assert sorted(d["webhook_id"] for d in log) == sorted(receiver.received)


def test_a_receiver_down_for_30_s_gets_every_event_in_order_once_back(
    hooked_farm: HookedFarm, receiver: WebhookReceiver
) -> None:
    client = hooked_farm(webhook_retry_delays_s=("1", "2", "4", "8", "8", "8", "8", "8"))
    register(client, receiver, ["job.retrying", "job.succeeded"])
    receiver.down()
    went_down = time.monotonic()
    # Each fails once, then succeeds: a job.retrying and then a job.succeeded for each.
    ids = enqueue(client, [{"type": "test_flaky", "payload": {"fail_times": 1}} for _ in range(10)])

    def all_tried() -> bool:
        log = deliveries(client)
        heads = [d for d in log if d["type"] == "job.retrying"]
        return len(log) == 20 and all(d["attempts"] >= 1 and d["last_error"] for d in heads)

    wait_for(all_tried, timeout=30, what="the deliveries to fail against the receiver that is down")
    # A job's job.succeeded waits behind its job.retrying, untried: one line per job.
    assert all(d["attempts"] == 0 for d in deliveries(client, type="job.succeeded"))
    wait_for(lambda: time.monotonic() - went_down >= 30, timeout=31, interval=0.5, what="30 s of outage")
    assert receiver.hits == 0
    receiver.up()

    wait_for(lambda: len(receiver.received) >= 20, timeout=30, what="every event after the outage")
    order = [(b["data"]["id"], b["type"]) for b in receiver.received.values()]
    for job_id in ids:
        mine = [t for i, t in order if i == job_id]
        assert mine == ["job.retrying", "job.succeeded"], (job_id, mine)
    assert receiver.rejected == []
    wait_for(lambda: _all_delivered(client), what="the log to show every delivery delivered")


def test_a_receiver_that_never_answers_ends_in_dead_deliveries_that_a_redrive_delivers(
    hooked_farm: HookedFarm, receiver: WebhookReceiver, settings: Settings
) -> None:
    # Two tries, the second at least 1.2 s after the first failed (0.2 s of delay, 1 s of waiting for
    # an answer): past the 1 s an endpoint may keep failing, so it dies and disables the endpoint.
    client = hooked_farm(webhook_timeout_s=1.0, webhook_retry_delays_s=("0.2",), webhook_disable_after_s=1.0)
    endpoint = register(client, receiver, ["job.succeeded"])
    receiver.mode = "hang"
    ids = enqueue(client, [{"type": "test_echo", "payload": {"value": i}} for i in range(3)])

    def dead() -> bool:
        log = deliveries(client, endpoint=endpoint["id"], status="dead")
        return len(log) == 3

    wait_for(dead, timeout=30, what="three dead deliveries")
    log = deliveries(client, endpoint=endpoint["id"])
    assert all(d["attempts"] == 2 and "no answer within 1 s" in d["last_error"] for d in log)
    # Failing for longer than allowed: the farm disabled it and told ops in the audit log.
    shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()
    assert shown["enabled"] is False and shown["disabled_reason"].startswith("every delivery failed since")
    audit = client.get("/v1/audit").json()["items"]
    assert [e["action"] for e in audit] == ["webhook_endpoint.disable"]
    assert audit[0]["actor"] == "farm"
    admin = {"Authorization": f"Bearer {make_key(settings, *SCOPES, name='admin')}"}
    scraped = client.get("/metrics", headers=admin).text
    assert "jobyard_webhook_endpoints_disabled 1.0" in scraped
    assert "jobyard_webhook_deliveries_pending 0.0" in scraped  # dead, not waiting

    receiver.mode = "ok"
    receiver.release()
    body = {"filter": {"endpoint": endpoint["id"]}, "reason": "receiver fixed", "dry_run": True}
    dry = client.post("/v1/webhook-deliveries/redrive", json=body).json()
    assert (dry["matched"], dry["redriven"], dry["audit_id"]) == (3, 0, None)
    assert len(deliveries(client, status="dead")) == 3  # a dry run changes nothing

    done = client.post("/v1/webhook-deliveries/redrive", json=body | {"dry_run": False}).json()
    assert (done["matched"], done["redriven"], done["waiting_on_disabled"]) == (3, 3, 3)
    entry = client.get("/v1/audit").json()["items"][0]  # newest first
    assert entry["id"] == done["audit_id"]
    assert (entry["action"], entry["reason"], entry["counts"]["redriven"]) == (
        "webhook_deliveries.redrive",
        "receiver fixed",
        3,
    )
    enabled = client.patch(f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True

    wait_for(lambda: len(receiver.received) >= 3, timeout=30, what="the redriven deliveries")
    assert sorted(b["data"]["id"] for b in receiver.received.values()) == sorted(ids)
    wait_for(lambda: _all_delivered(client), what="the log to show every delivery delivered")


def test_unread_counters_and_message_statuses_are_delivered_without_the_number(
    hooked_farm: HookedFarm, receiver: WebhookReceiver, settings: Settings, whatsapp: FakeWhatsApp
) -> None:
    sending = sending_to(settings, whatsapp, "app-secret-hooks")
    changes = {
        f.name: getattr(sending, f.name) for f in fields(sending) if f.name.startswith(("whatsapp", "quiet"))
    }
    client = hooked_farm(**changes)
    register(client, receiver, ["unread.changed", "message.status"])
    number = "+14155550199"
    enqueue(
        client,
        [
            {
                "type": "unread_count",
                "payload": {"chat_id": "c1", "user_id": "u1", "op": "increment", "by": 3},
            },
            {"type": "whatsapp_message", "payload": {"to": number, "text": "your order shipped"}},
        ],
    )

    wait_for(lambda: receiver.of_type("unread.changed") and receiver.of_type("message.status"), timeout=30)
    (unread,) = receiver.of_type("unread.changed")
    assert (unread["data"]["chat_id"], unread["data"]["user_id"], unread["data"]["unread"]) == ("c1", "u1", 3)
    statuses = receiver.of_type("message.status")
    assert statuses[0]["data"]["status"] == "sent" and statuses[0]["data"]["provider_message_id"]
    every_body = json.dumps(list(receiver.received.values()))
    assert number not in every_body and number.lstrip("+") not in every_body
    assert "your order shipped" not in every_body  # a status, not the message
