"""Schedules per tenant: a schedule is the tenant's whose key made it, another tenant's ops key
cannot see, change or delete it (404), and the jobs it fires are its tenant's."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from core.engine.schedules import fire_due_schedules
from core.platform.settings import Settings
from tests.integration.conftest import make_key


def _as(settings: Settings, tenant: str, *scopes: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {make_key(settings, *scopes, name=f'{tenant} {scopes}', tenant=tenant)}"
    }


def test_a_schedule_and_its_jobs_are_their_tenants(
    api: TestClient[Any], settings: Settings, broker: Any
) -> None:
    writer_a = _as(settings, "shop-a", "jobs:write", "jobs:read")
    ops_a, ops_b = _as(settings, "shop-a", "ops"), _as(settings, "shop-b", "ops")
    made = api.post(
        "/v1/schedules",
        json={"type": "test_effect", "payload": {"marker": "nightly"}, "every_seconds": 3600},
        headers=writer_a,
    )
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert schedule["tenant"] == "shop-a" and schedule["created_by"] is not None

    path = f"/v1/schedules/{schedule['id']}"
    for method, body in (("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)):
        r = api.request(method, path, json=body, headers=ops_b)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "schedule_not_found"), (method, r.text)
    assert api.get("/v1/schedules", headers=ops_b).json()["items"] == []
    assert [s["id"] for s in api.get("/v1/schedules", headers=ops_a).json()["items"]] == [schedule["id"]]
    assert api.get(path, headers=ops_a).json()["enabled"] is True  # the PATCH above changed nothing

    # Its first slot is now: the job it fires is shop-a's, visible to shop-a's key only.
    assert fire_due_schedules(settings, broker) == 1
    fired = api.get(path, headers=ops_a).json()["last_job_id"]
    job = api.get(f"/v1/jobs/{fired}", headers=writer_a).json()
    assert (job["tenant"], job["type"]) == ("shop-a", "test_effect")
    assert api.get(f"/v1/jobs/{fired}", headers=_as(settings, "shop-b", "jobs:read")).status_code == 404
    assert api.delete(path, headers=ops_a).status_code == 204
