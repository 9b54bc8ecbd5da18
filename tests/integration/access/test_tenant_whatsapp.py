"""WhatsApp per tenant: two tenants with their own (fake) numbers each send through their own number
and token; a STOP written to one tenant's number opts the writer out of that tenant's messages only;
statuses settle only the tenant's messages; a webhook signed with one tenant's app secret that names
another's number is refused; another tenant's opt-outs, outbound messages and number answer 404;
the secrets appear in no answer and no log line; a changed token is used without a restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.messaging.numbers import sealing_context
from core.messaging.webhook import signature
from core.platform.crypto import data_cipher, looks_sealed
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import tenant_whatsapp
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.services import wait_for

FARM_SECRET = "farm-app-secret-0"
#: Each tenant's own number on the fake Cloud API: phone number id, token, app secret, verify token.
NUMBERS = {
    "shop-a": ("200000000000001", "shop-a-token-AAAA1111", "shop-a-app-secret-x1", "shop-a-verify-token-1"),
    "shop-b": ("200000000000002", "shop-b-token-BBBB2222", "shop-b-app-secret-y2", "shop-b-verify-token-2"),
}
RECIPIENT = "+14155550201"


@pytest.fixture
def settings(settings: Settings, whatsapp: FakeWhatsApp) -> Settings:
    """The farm's own number on the fake Cloud API, and each tenant's number beside it."""
    for phone_number_id, token, _, _ in NUMBERS.values():
        whatsapp.add_number(phone_number_id, token)
    return settings.replace(
        whatsapp_api_base_url=whatsapp.url,
        whatsapp_api_version=VERSION,
        whatsapp_token=TOKEN,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_app_secret=FARM_SECRET,
        whatsapp_verify_token="farm-verify-token",
        quiet_hours="off",
    )


#: The webhook's answer for a body that applied nothing.
NOTHING = {
    "statuses": 0,
    "unknown_statuses": 0,
    "opt_outs": 0,
    "messages": 0,
    "auto_replies": 0,
    "handoffs": 0,
}


def _key(settings: Settings, tenant: str) -> dict[str, str]:
    secret = make_key(settings, "ops", "jobs:read", "jobs:write", name=f"{tenant} ops", tenant=tenant)
    return {"Authorization": f"Bearer {secret}"}


def _set_number(api: TestClient[Any], tenant: str, headers: dict[str, str], **changes: str) -> Any:
    phone_number_id, token, app_secret, verify_token = NUMBERS[tenant]
    body = {
        "phone_number_id": phone_number_id,
        "access_token": token,
        "app_secret": app_secret,
        "verify_token": verify_token,
        **changes,
    }
    return api.put(f"/v1/tenants/{tenant}/whatsapp", json=body, headers=headers)


def _send(api: TestClient[Any], headers: dict[str, str], to: str, text: str) -> str:
    body = {"type": "whatsapp_message", "payload": {"to": to, "text": text}}
    r = api.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _change(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    meta = {"display_phone_number": "15550000000", "phone_number_id": phone_number_id}
    change = {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": meta, **value}}
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA1", "changes": [change]}]}


def _stop(phone_number_id: str, writer: str) -> dict[str, Any]:
    message = {"from": writer.lstrip("+"), "id": "wamid.in1", "timestamp": "1767225600", "type": "text"}
    return _change(phone_number_id, {"messages": [{**message, "text": {"body": "STOP"}}]})


def _status(phone_number_id: str, message_id: str, status: str) -> dict[str, Any]:
    at = str(int(datetime.now(UTC).timestamp()))
    item = {"id": message_id, "status": status, "timestamp": at, "recipient_id": "1"}
    return _change(phone_number_id, {"statuses": [item]})


def _webhook(client: TestClient[Any], body: dict[str, Any], secret: str) -> Any:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", "X-Hub-Signature-256": signature(secret, raw)}
    return client.post("/webhooks/whatsapp", content=raw, headers=headers)


def test_two_tenants_send_through_their_own_numbers_and_a_stop_binds_only_its_tenant(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    whatsapp: FakeWhatsApp,
    settings: Settings,
    wait_job: JobWaiter,
) -> None:
    keys = {tenant: _key(settings, tenant) for tenant in NUMBERS}
    answers: list[str] = []  # every answer's text: no secret may be in any of them
    for tenant, headers in keys.items():
        r = _set_number(api, tenant, headers)
        assert r.status_code == 201, r.text
        answers.append(r.text)
    farm.worker()

    # Each tenant's message goes out through its own number, with its own token.
    sent = {
        tenant: _send(api, headers, RECIPIENT, f"hello from {tenant}") for tenant, headers in keys.items()
    }
    for tenant, job_id in sent.items():
        wait_job(job_id, timeout=60)
        phone_number_id, token, _, _ = NUMBERS[tenant]
        (request,) = whatsapp.requests(number=phone_number_id)
        assert request.path == f"/{VERSION}/{phone_number_id}/messages"
        assert request.authorization == f"Bearer {token}"
        assert request.body["text"] == {"body": f"hello from {tenant}"}
    assert whatsapp.requests(number=PHONE_NUMBER_ID) == []  # nothing through the farm's own number

    # Outbound messages are their tenant's: the other tenant's answer 404 and stay out of lists.
    outbound = {}
    for tenant, headers in keys.items():
        r = api.get("/v1/outbound-messages", headers=headers)
        answers.append(r.text)
        (message,) = r.json()["items"]
        assert (message["tenant"], message["job_id"]) == (tenant, sent[tenant])
        outbound[tenant] = message
    a_id, b_id = outbound["shop-a"]["id"], outbound["shop-b"]["id"]
    assert api.get(f"/v1/outbound-messages/{b_id}", headers=keys["shop-a"]).status_code == 404
    assert api.get(f"/v1/outbound-messages/{a_id}", headers=keys["shop-b"]).status_code == 404
    wrong = api.post(f"/v1/outbound-messages/{b_id}/resolve", json={"sent": True}, headers=keys["shop-a"])
    assert wrong.json()["error"]["code"] == "outbound_message_not_found"
    by_job = api.get("/v1/outbound-messages", params={"job_id": sent["shop-b"]}, headers=keys["shop-a"])
    assert by_job.json()["items"] == []
    assert len(api.get("/v1/outbound-messages").json()["items"]) == 2  # the admin key sees both

    # A status reported through shop-a's number settles shop-a's message, never shop-b's.
    a_number, _, a_secret, _ = NUMBERS["shop-a"]
    b_number = NUMBERS["shop-b"][0]
    b_wamid = outbound["shop-b"]["provider_message_id"]
    r = _webhook(public, _status(a_number, b_wamid, "read"), a_secret)
    assert r.json() == {**NOTHING, "unknown_statuses": 1}
    r = _webhook(public, _status(a_number, outbound["shop-a"]["provider_message_id"], "delivered"), a_secret)
    assert r.json()["statuses"] == 1
    assert api.get(f"/v1/outbound-messages/{a_id}").json()["status"] == "delivered"
    assert api.get(f"/v1/outbound-messages/{b_id}").json()["status"] == "sent"

    # Signed with shop-a's secret but naming shop-b's number (alone, or beside shop-a's): refused whole.
    forged = _stop(b_number, RECIPIENT)
    assert _webhook(public, forged, a_secret).json()["error"]["code"] == "bad_signature"
    both = _stop(a_number, RECIPIENT)
    both["entry"].append(_stop(b_number, RECIPIENT)["entry"][0])
    assert _webhook(public, both, a_secret).status_code == 401
    assert _webhook(public, _stop(a_number, RECIPIENT), FARM_SECRET).status_code == 401
    assert api.get("/v1/opt-outs").json()["items"] == []

    # The recipient writes STOP to shop-a's number: opted out of shop-a's messages only.
    r = _webhook(public, _stop(a_number, RECIPIENT), a_secret)
    # The STOP is stored in the customer's conversation with shop-a's number (which has no assistant).
    assert r.json() == {**NOTHING, "opt_outs": 1, "messages": 1}
    (opt_out,) = api.get("/v1/opt-outs", headers=keys["shop-a"]).json()["items"]
    assert (opt_out["tenant"], opt_out["address"], opt_out["source"]) == ("shop-a", RECIPIENT, "webhook")
    assert api.get("/v1/opt-outs", headers=keys["shop-b"]).json()["items"] == []
    assert api.get(f"/v1/opt-outs/{RECIPIENT}", headers=keys["shop-a"]).status_code == 200
    assert api.get(f"/v1/opt-outs/{RECIPIENT}", headers=keys["shop-b"]).status_code == 404
    named = api.get(f"/v1/opt-outs/{RECIPIENT}", params={"tenant": "shop-a"}, headers=keys["shop-b"])
    assert named.status_code == 404  # naming the other tenant reaches nothing either
    assert api.delete(f"/v1/opt-outs/{RECIPIENT}", headers=keys["shop-b"]).status_code == 404
    listed = api.get("/v1/opt-outs", params={"tenant": "shop-a"}, headers=keys["shop-b"]).json()
    assert listed["items"] == []

    # So shop-a's next send to them is refused by the opt-out rule; shop-b's goes out.
    refused = wait_job(_send(api, keys["shop-a"], RECIPIENT, "again from shop-a"), "dead", timeout=60)
    assert refused["error"]["code"] == "opted_out"
    wait_job(_send(api, keys["shop-b"], RECIPIENT, "again from shop-b"), timeout=60)
    assert len(whatsapp.requests(RECIPIENT, number=b_number)) == 2
    assert len(whatsapp.requests(RECIPIENT, number=a_number)) == 1

    # shop-b's own opt-out of the same number is a row of its own, and goes without touching shop-a's.
    r = api.post("/v1/opt-outs", json={"to": RECIPIENT}, headers=keys["shop-b"])
    assert (r.status_code, r.json()["tenant"]) == (201, "shop-b")
    assert api.delete(f"/v1/opt-outs/{RECIPIENT}", headers=keys["shop-b"]).status_code == 204
    assert api.get(f"/v1/opt-outs/{RECIPIENT}", headers=keys["shop-a"]).status_code == 200

    # A new token is used from the next send on, by the running worker.
    new_token = "shop-b-token-rotated-3333"
    whatsapp.add_number(b_number, new_token)
    answers.append(_set_number(api, "shop-b", keys["shop-b"], access_token=new_token).text)
    wait_job(_send(api, keys["shop-b"], "+14155550202", "with the new token"), timeout=60)
    (request,) = whatsapp.requests("+14155550202")
    assert request.authorization == f"Bearer {new_token}"

    # No secret in any answer, nor in any line the worker logged.
    answers += [api.get(f"/v1/tenants/{t}/whatsapp").text for t in NUMBERS]
    answers.append(api.get("/v1/audit").text)
    secrets = [s for _, token, app_secret, verify in NUMBERS.values() for s in (token, app_secret, verify)]
    secrets.append(new_token)
    for text in [*answers, *(p.log() for p in farm.processes)]:
        assert not [s for s in secrets if s in text], text


def test_a_stop_to_the_farms_number_binds_every_tenant_sending_through_it(
    api: TestClient[Any],
    public: TestClient[Any],
    farm: Farm,
    whatsapp: FakeWhatsApp,
    settings: Settings,
    wait_job: JobWaiter,
) -> None:
    keys = {tenant: _key(settings, tenant) for tenant in ("shop-a", "shop-c")}
    assert _set_number(api, "shop-a", keys["shop-a"]).status_code == 201  # shop-c has no number of its own
    r = _webhook(public, _stop(PHONE_NUMBER_ID, RECIPIENT), FARM_SECRET)
    assert r.json()["opt_outs"] == 1
    (opt_out,) = api.get("/v1/opt-outs").json()["items"]
    assert opt_out["tenant"] == "default"
    farm.worker()

    refused = wait_job(_send(api, keys["shop-c"], RECIPIENT, "through the farm's number"), "dead", timeout=60)
    assert refused["error"]["code"] == "opted_out"
    wait_job(_send(api, keys["shop-a"], RECIPIENT, "through shop-a's own number"), timeout=60)
    (request,) = whatsapp.requests(RECIPIENT)
    assert request.number == NUMBERS["shop-a"][0]

    # A tenant without its own number sends through the farm's; its message is still its own.
    wait_job(_send(api, keys["shop-c"], "+14155550203", "hello"), timeout=60)
    (request,) = whatsapp.requests("+14155550203")
    assert (request.number, request.authorization) == (PHONE_NUMBER_ID, f"Bearer {TOKEN}")
    (message,) = api.get("/v1/outbound-messages", headers=keys["shop-c"]).json()["items"]
    assert message["tenant"] == "shop-c"
    # The farm's statuses reach it: the farm's app secret is the operator's.
    r = _webhook(public, _status(PHONE_NUMBER_ID, message["provider_message_id"], "read"), FARM_SECRET)
    assert r.json()["statuses"] == 1


def test_only_the_tenant_or_an_admin_sets_reads_and_removes_a_tenants_number(
    api: TestClient[Any], public: TestClient[Any], settings: Settings
) -> None:
    keys = {tenant: _key(settings, tenant) for tenant in NUMBERS}
    reader = {"Authorization": f"Bearer {make_key(settings, 'jobs:read', 'jobs:write', tenant='shop-a')}"}
    assert _set_number(api, "shop-a", reader).status_code == 403  # it takes ops

    # Another tenant's number: 404 to every method, as a tenant without one; nothing is changed.
    assert _set_number(api, "shop-b", keys["shop-b"]).status_code == 201
    for method in ("GET", "DELETE"):
        r = api.request(method, "/v1/tenants/shop-b/whatsapp", headers=keys["shop-a"])
        assert r.json()["error"]["code"] == "whatsapp_number_not_found", (method, r.text)
    hijack = _set_number(api, "shop-b", keys["shop-a"], access_token="stolen-token-123")
    assert hijack.status_code == 404
    with transaction(settings) as conn:
        row = conn.execute(sa.select(tenant_whatsapp)).one()
    assert row.tenant == "shop-b" and row.updated_by is not None
    # Sealed, each secret bound to its field and tenant: nothing in clear in Postgres.
    for column in ("token_sealed", "app_secret_sealed", "verify_token_sealed"):
        assert looks_sealed(row._mapping[column])
    token = data_cipher().open(row.token_sealed, sealing_context("token_sealed", "shop-b"))
    assert token == NUMBERS["shop-b"][1]

    # The answer shows what is set and the token's last four characters, never a secret.
    shown = api.get("/v1/tenants/shop-b/whatsapp", headers=keys["shop-b"]).json()
    assert shown == api.get("/v1/tenants/shop-b/whatsapp").json()  # the admin key reads any tenant's
    assert {k: shown[k] for k in ("tenant", "phone_number_id", "token_set", "token_last4")} == {
        "tenant": "shop-b",
        "phone_number_id": NUMBERS["shop-b"][0],
        "token_set": True,
        "token_last4": "2222",
    }
    assert (shown["app_secret_set"], shown["verify_token_set"]) == (True, True)
    assert not {"access_token", "app_secret", "verify_token"} & set(shown)

    # A number is one tenant's, and never the farm's own.
    taken = _set_number(api, "shop-a", keys["shop-a"], phone_number_id=NUMBERS["shop-b"][0])
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "whatsapp_number_taken")
    farms = _set_number(api, "shop-a", keys["shop-a"], phone_number_id=PHONE_NUMBER_ID)
    assert farms.status_code == 409
    bad = _set_number(api, "shop-a", keys["shop-a"], phone_number_id="+4477", app_secret="short")
    assert bad.status_code == 422 and "short" not in bad.text
    assert api.get("/v1/tenants/shop-a/whatsapp", headers=keys["shop-a"]).status_code == 404

    # The handshake takes the tenant's own verify token as well as the farm's.
    params = {"hub.mode": "subscribe", "hub.challenge": "42"}
    for token in ("farm-verify-token", NUMBERS["shop-b"][3]):
        assert public.get("/webhooks/whatsapp", params={**params, "hub.verify_token": token}).text == "42"
    assert public.get("/webhooks/whatsapp", params={**params, "hub.verify_token": "guess"}).status_code == 403

    # Replaced (200), then removed; each change is in the tenant's audit log, without the secrets.
    assert _set_number(api, "shop-b", keys["shop-b"], verify_token="shop-b-verify-token-9").status_code == 200
    assert api.delete("/v1/tenants/shop-b/whatsapp", headers=keys["shop-b"]).status_code == 204
    assert api.get("/v1/tenants/shop-b/whatsapp").status_code == 404
    entries = api.get("/v1/audit", headers=keys["shop-b"]).json()["items"]
    assert [(e["action"], e["tenant"]) for e in entries] == [
        ("whatsapp_number_delete", "shop-b"),
        ("whatsapp_number_set", "shop-b"),
        ("whatsapp_number_set", "shop-b"),
    ]
    assert api.get("/v1/audit", headers=keys["shop-a"]).json()["items"] == []
    assert not any(s in json.dumps(entries) for s in NUMBERS["shop-b"][1:])


def test_no_tenant_secret_reaches_the_api_log(farm: Farm, settings: Settings) -> None:
    """A real API process: setting, replacing, reading a number, a bad request carrying secrets, the
    handshake and signed and forged webhooks; its log holds none of the secrets."""
    _, base = farm.api()
    headers = _key(settings, "shop-a")
    phone_number_id, token, app_secret, verify_token = NUMBERS["shop-a"]
    body = {
        "phone_number_id": phone_number_id,
        "access_token": token,
        "app_secret": app_secret,
        "verify_token": verify_token,
    }
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        assert client.put("/v1/tenants/shop-a/whatsapp", json=body).status_code == 201
        assert client.put("/v1/tenants/shop-a/whatsapp", json=body).status_code == 200
        assert client.get("/v1/tenants/shop-a/whatsapp").json()["token_last4"] == token[-4:]
        bad = client.put("/v1/tenants/shop-a/whatsapp", json={**body, "phone_number_id": token})
        assert bad.status_code == 422 and token not in bad.text
        params = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": "7"}
        assert client.get("/webhooks/whatsapp", params=params).text == "7"
        raw = json.dumps(_stop(phone_number_id, RECIPIENT)).encode()
        for secret, status in ((app_secret, 200), (FARM_SECRET, 401)):
            sig = {"content-type": "application/json", "X-Hub-Signature-256": signature(secret, raw)}
            assert client.post("/webhooks/whatsapp", content=raw, headers=sig).status_code == status
    (api,) = farm.processes
    # Every request's line is in (an INFO line may wait a tenth of a second to be written).
    log = wait_for(lambda: '"status": 401' in api.log() and api.log(), what="the last request's line")
    assert '"whatsapp_webhook_bad_signature"' in log and '"path": "/v1/tenants/shop-a/whatsapp"' in log
    assert [s for s in (token, app_secret, verify_token) if s in log] == []
