"""Two tenants on one farm: each sees and changes only its own jobs. Another tenant's job answers 404
like one that never existed; business keys and idempotency keys are each tenant's own; a job records
the keys that created and cancelled it; an admin key reads every tenant's."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from litestar.testing import TestClient

from core.engine import finished
from core.engine.jobs import utcnow
from core.engine.queries import get_job
from core.platform.db import transaction
from core.platform.settings import Settings
from tests.integration.conftest import make_key
from tests.services import jobyard


class Caller:
    """A tenant's client: the app in-process with that tenant's key."""

    def __init__(self, api: TestClient[Any], settings: Settings, tenant: str) -> None:
        self.api, self.tenant = api, tenant
        self.secret = make_key(settings, "jobs:write", "jobs:read", name=f"{tenant} backend", tenant=tenant)
        self.headers = {"Authorization": f"Bearer {self.secret}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.api.request(method, path, headers=self.headers, **kwargs)

    def enqueue(self, **fields: Any) -> Any:
        body = {"type": "test_effect", "payload": {"marker": self.tenant}, "delay_seconds": 86400, **fields}
        return self.request("POST", "/v1/jobs", json=body)


def _key_id(api: TestClient[Any], caller: Caller) -> str:
    (key,) = [k for k in api.get("/v1/keys").json()["items"] if k["name"] == f"{caller.tenant} backend"]
    return str(key["id"])


def test_another_tenants_job_does_not_exist_for_a_caller(api: TestClient[Any], settings: Settings) -> None:
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    job = a.enqueue(business_key="order-123").json()
    later = (utcnow() + timedelta(days=2)).isoformat()
    assert (job["tenant"], job["created_by"]) == ("shop-a", _key_id(api, a))
    job_id = job["id"]

    for method, path, body in (
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/attempts", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None),
        ("POST", f"/v1/jobs/{job_id}/reschedule", {"run_at": later}),
    ):
        r = b.request(method, path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found"), (path, r.text)
        # The same answer as for an id no one ever had.
        ghost = b.request(method, path.replace(job_id, "00000000-0000-4000-8000-000000000000"), json=body)
        assert ghost.status_code == 404 and ghost.json()["error"]["code"] == r.json()["error"]["code"]
    assert b.request("GET", "/v1/jobs").json()["items"] == []
    assert b.request("GET", "/v1/jobs", params={"business_key": "order-123"}).json()["items"] == []
    assert b.request("POST", "/v1/jobs/cancel", json={"business_key": "order-123"}).json() == {"cancelled": 0}

    unchanged = a.request("GET", f"/v1/jobs/{job_id}").json()
    assert (unchanged["status"], unchanged["run_at"]) == ("scheduled", job["run_at"])
    assert [j["id"] for j in a.request("GET", "/v1/jobs").json()["items"]] == [job_id]


def test_two_tenants_use_the_same_business_and_idempotency_keys_without_touching(
    api: TestClient[Any], settings: Settings
) -> None:
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    first_a = a.enqueue(business_key="order-123", idempotency_key="order-123-checkin")
    first_b = b.enqueue(business_key="order-123", idempotency_key="order-123-checkin")
    # Different payloads under the same key: no conflict, since each tenant's key is its own.
    assert (first_a.status_code, first_b.status_code) == (201, 201), (first_a.text, first_b.text)
    assert first_a.json()["id"] != first_b.json()["id"]
    again_a = a.enqueue(business_key="order-123", idempotency_key="order-123-checkin")
    assert (again_a.status_code, again_a.json()["id"]) == (200, first_a.json()["id"])
    batch = b.request(
        "POST",
        "/v1/jobs/batch",
        json={
            "jobs": [
                {
                    "type": "test_effect",
                    "payload": {"marker": "shop-b"},
                    "idempotency_key": "order-123-checkin",
                }
            ]
        },
    )
    assert batch.status_code == 201 and batch.json()["items"][0]["id"] == first_b.json()["id"]

    # Cancelling by business key cancels the caller's own, recording which key did it.
    assert a.request("POST", "/v1/jobs/cancel", json={"business_key": "order-123"}).json() == {"cancelled": 1}
    cancelled = a.request("GET", f"/v1/jobs/{first_a.json()['id']}").json()
    assert (cancelled["status"], cancelled["cancelled_by"]) == ("cancelled", _key_id(api, a))
    assert b.request("GET", f"/v1/jobs/{first_b.json()['id']}").json()["status"] == "scheduled"

    # Still each tenant's own once the cancelled job has moved to the history.
    assert finished.move_finished(settings, utcnow() + timedelta(minutes=5)) == 1
    with transaction(settings) as conn:
        moved = get_job(conn, first_a.json()["id"])
    assert moved.status == "cancelled" and moved.tenant == "shop-a"
    assert a.enqueue(idempotency_key="order-123-checkin", business_key="order-123").json()["id"] == str(
        moved.id
    )
    assert (
        b.enqueue(idempotency_key="order-123-checkin", business_key="order-123").json()["id"]
        == first_b.json()["id"]
    )
    assert b.request("GET", f"/v1/jobs/{moved.id}").status_code == 404


def test_an_admin_key_reads_every_tenants_jobs(api: TestClient[Any], settings: Settings) -> None:
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    ids = {a.enqueue().json()["id"]: "shop-a", b.enqueue().json()["id"]: "shop-b"}
    listed = {j["id"]: j["tenant"] for j in api.get("/v1/jobs").json()["items"]}
    assert listed == ids
    for job_id, tenant in ids.items():
        assert api.get(f"/v1/jobs/{job_id}").json()["tenant"] == tenant
    # The fixture's admin key is the default tenant's: what it enqueues is the default tenant's.
    assert (
        api.post("/v1/jobs", json={"type": "test_effect", "payload": {"marker": "x"}}).json()["tenant"]
        == "default"
    )


def test_the_command_line_cancels_a_business_key_within_one_tenant(
    api: TestClient[Any], settings: Settings
) -> None:
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    job_a = a.enqueue(business_key="order-9").json()["id"]
    job_b = b.enqueue(business_key="order-9").json()["id"]
    done = jobyard(settings, "jobs", "cancel", "--business-key", "order-9", "--tenant", "shop-b")
    assert done.returncode == 0, done.stderr
    assert "cancelled 1 job(s) of tenant shop-b" in done.stdout
    assert (
        a.request("GET", f"/v1/jobs/{job_a}").json()["status"],
        b.request("GET", f"/v1/jobs/{job_b}").json()["status"],
    ) == ("scheduled", "cancelled")
    listed = jobyard(settings, "jobs", "list", "--tenant", "shop-a", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [job_a]
