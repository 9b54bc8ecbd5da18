"""The farm's views per tenant: `GET /v1/queues` and the dashboard count a tenant's key's own jobs
only (no Redis depths, no farm-wide chart), `/metrics` needs a key reaching every tenant, and the
dashboard's job, dead-letter, schedule and audit pages of one tenant's session show nothing of
another's (its job answers 404, its dead letters match nothing)."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.integration.access.test_sessions import tenant_login
from tests.integration.conftest import make_key
from tests.integration.engine.test_dead_letters import insert_dead, job_status


def _as(settings: Settings, tenant: str, *scopes: str) -> dict[str, str]:
    key = make_key(settings, *scopes, name=f"{tenant} {' '.join(scopes)}", tenant=tenant)
    return {"Authorization": f"Bearer {key}"}


def _row(overview: dict[str, Any], type_: str) -> dict[str, Any]:
    (row,) = [r for r in overview["items"] if r["type"] == type_]
    return row


def test_queues_count_the_keys_tenants_jobs_only(api: TestClient[Any], settings: Settings) -> None:
    writer_a = _as(settings, "shop-a", "jobs:write")
    ops_a, ops_b = _as(settings, "shop-a", "ops"), _as(settings, "shop-b", "ops")
    later = {"type": "test_flaky", "payload": {}, "delay_seconds": 3600}
    assert api.post("/v1/jobs/batch", json={"jobs": [later] * 3}, headers=writer_a).status_code == 201
    insert_dead(settings, 2, tenant="shop-a")
    insert_dead(settings, 1, tenant="shop-b")

    mine = _row(api.get("/v1/queues", headers=ops_a).json(), "test_flaky")
    theirs = _row(api.get("/v1/queues", headers=ops_b).json(), "test_flaky")
    every = api.get("/v1/queues").json()  # the admin key
    assert (mine["scheduled"], mine["dead"]) == (3, 2)
    assert (theirs["scheduled"], theirs["dead"]) == (0, 1)
    assert (_row(every, "test_flaky")["scheduled"], _row(every, "test_flaky")["dead"]) == (3, 3)
    # Redis's lists hold every tenant's messages: their depths are the admin key's to see.
    assert mine["ready"] is None and {
        q["ready"] for q in api.get("/v1/queues", headers=ops_a).json()["queues"]
    } == {None}
    assert _row(every, "test_flaky")["ready"] == 0

    # The dead-letter counts follow each tenant's redrives and discards.
    discard = {"filter": {}, "reason": "cleared", "dry_run": False}
    assert api.post("/v1/dead-letters/discard", json=discard, headers=ops_a).json()["discarded"] == 2
    assert _row(api.get("/v1/queues", headers=ops_a).json(), "test_flaky")["dead"] == 0
    assert _row(api.get("/v1/queues", headers=ops_b).json(), "test_flaky")["dead"] == 1


def test_metrics_need_a_key_that_reaches_every_tenant(api: TestClient[Any], settings: Settings) -> None:
    refused = api.get("/metrics", headers=_as(settings, "shop-a", "ops"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "admin" in refused.json()["error"]["message"]
    assert api.get("/metrics", headers=_as(settings, "shop-a", "ops", "admin")).status_code == 200


def test_a_tenants_dashboard_shows_its_own_jobs_only(
    api: TestClient[Any], browser: TestClient[Any], settings: Settings
) -> None:
    theirs = insert_dead(settings, 2, tenant="shop-a")
    mine = insert_dead(settings, 1, tenant="shop-b")
    schedule = api.post(
        "/v1/schedules",
        json={"type": "test_flaky", "payload": {}, "every_seconds": 3600, "start_at": "2030-01-01T00:00:00Z"},
        headers=_as(settings, "shop-a", "jobs:write"),
    ).json()
    csrf = tenant_login(browser, settings, "shop-b")

    overview = browser.get("/dashboard")
    assert overview.status_code == 200
    assert "shop-b shift · shop-b" in overview.text
    assert 'aria-label="Succeeded and failed attempts' not in overview.text  # the farm's chart
    listed = browser.get("/dashboard/dead-letters")
    assert re.findall(r'<tr data-job="([^"]+)"', listed.text) == mine
    assert browser.get(f"/dashboard/jobs/{theirs[0]}").status_code == 404
    assert schedule["id"] not in browser.get("/dashboard/schedules").text
    toggled = browser.post(
        f"/dashboard/schedules/{schedule['id']}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    assert toggled.status_code == 404
    assert api.get(f"/v1/schedules/{schedule['id']}").json()["enabled"] is True

    # Another tenant's ids, and a filter matching everything, reach none of its dead letters.
    for form in (
        {"target": "selected", "ids": theirs},
        {"target": "matching"},
    ):
        body = {"csrf_token": csrf, "action": "discard", "reason": "not mine", **form}
        preview = browser.post("/dashboard/dead-letters/preview", data=body)
        expected = 0 if form["target"] == "selected" else 1
        assert f'data-field="matched">{expected}<' in preview.text, preview.text
    done = browser.post(
        "/dashboard/dead-letters/apply",
        data={
            "csrf_token": csrf,
            "action": "discard",
            "target": "selected",
            "ids": theirs,
            "reason": "not mine",
        },
    )
    entry = browser.get(done.headers["location"])
    assert 'data-field="discarded">0<' in entry.text
    assert job_status(settings) == {"dead": 3}
    # Its audit entry is its tenant's: shop-a's ops see nothing of it.
    audit_id = done.headers["location"].rsplit("/", 1)[1]

    def audit_ids(tenant: str) -> list[str]:
        return [e["id"] for e in api.get("/v1/audit", headers=_as(settings, tenant, "ops")).json()["items"]]

    assert audit_ids("shop-a") == [] and audit_ids("shop-b") == [audit_id]
