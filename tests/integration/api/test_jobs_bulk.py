"""POST /v1/jobs/bulk against real Postgres and Redis: a dry run says what would change and what is left
by state, the action changes only eligible jobs of the caller's tenant and writes one audit entry, and
bad requests are clear 4xx answers that change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from litestar.testing import TestClient

from core.engine.jobs import utcnow
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.conftest import make_key


def _enqueue(client: TestClient[Any], jobs: list[dict[str, Any]], **kw: Any) -> list[str]:
    r = client.post("/v1/jobs/batch", json={"jobs": jobs}, **kw)
    assert r.status_code == 201, r.text
    return [j["id"] for j in r.json()["items"]]


def _statuses(client: TestClient[Any], ids: list[str], **kw: Any) -> list[str]:
    return [client.get(f"/v1/jobs/{i}", **kw).json()["status"] for i in ids]


def test_bulk_cancel_retry_and_reschedule(api: TestClient[Any], settings: Settings) -> None:
    # A key of one tenant (the fixture's reaches every tenant).
    own = make_key(settings, "ops", "jobs:write", "jobs:read", name="own")
    api.headers["Authorization"] = f"Bearer {own}"
    later = {"type": "test_flaky", "payload": {}, "delay_seconds": 3600, "business_key": "bulk-1"}
    scheduled = _enqueue(api, [later] * 3)
    queued = _enqueue(api, [{"type": "test_crash", "payload": {}, "business_key": "bulk-1"}])  # no worker
    other_key = make_key(settings, "ops", "jobs:write", "jobs:read", name="other", tenant="shop-x")
    other = {"headers": {"Authorization": f"Bearer {other_key}"}}
    theirs = _enqueue(api, [later], **other)

    # A dry run: the tenant's own jobs only, by state; nothing changes.
    body = {"action": "retry", "filter": {"business_key": "bulk-1"}, "reason": "look", "dry_run": True}
    dry = api.post("/v1/jobs/bulk", json=body).json()
    assert (dry["matched"], dry["changed"], dry["not_eligible"], dry["audit_id"]) == (
        3,
        0,
        {"queued": 1},
        None,
    )
    assert _statuses(api, scheduled) == ["scheduled"] * 3

    # Reschedule two by id, then run the third now.
    run_at = (utcnow() + timedelta(days=2)).isoformat()
    r = api.post(
        "/v1/jobs/bulk",
        json={"action": "reschedule", "ids": scheduled[:2], "run_at": run_at, "reason": "move them"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["matched"], r.json()["changed"]) == (2, 2)
    assert [api.get(f"/v1/jobs/{i}").json()["run_at"][:10] for i in scheduled[:2]] == [run_at[:10]] * 2
    r = api.post("/v1/jobs/bulk", json={"action": "retry", "ids": scheduled[2:], "reason": "now"})
    assert r.json()["changed"] == 1
    assert api.get(f"/v1/jobs/{scheduled[2]}").json()["run_at"] <= utcnow().isoformat()

    # Cancel everything of the key: the other tenant's job, named by id, is not touched.
    r = api.post(
        "/v1/jobs/bulk",
        json={"action": "cancel", "filter": {"business_key": "bulk-1"}, "reason": "order withdrawn"},
    ).json()
    assert (r["matched"], r["changed"]) == (4, 4)
    assert _statuses(api, scheduled + queued) == ["cancelled"] * 4
    r = api.post("/v1/jobs/bulk", json={"action": "cancel", "ids": scheduled, "reason": "x"}, **other).json()
    assert (r["matched"], r["changed"]) == (0, 0)
    assert _statuses(api, theirs, **other) == ["scheduled"]
    entries = api.get("/v1/audit").json()["items"]
    cancel = next(e for e in entries if e["action"] == "jobs.cancel" and e["reason"] == "order withdrawn")
    assert cancel["counts"] == {"matched": 4, "cancelled": 4}
    assert cancel["selection"] == {"filter": {"business_key": "bulk-1"}}
    assert [e["action"] for e in entries].count("jobs.reschedule") == 1


def test_a_bulk_cancel_asks_running_jobs_to_stop(api: TestClient[Any], settings: Settings) -> None:
    """A job a worker holds (made running here as a claim would, no worker in this test) is asked to
    stop, as POST /v1/jobs/{id}/cancel asks it, and counted apart."""
    waiting, held = _enqueue(api, [{"type": "test_crash", "payload": {}, "business_key": "bulk-run"}] * 2)
    with transaction(settings) as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == held).values(status="running", attempts=1))
    body = {"action": "cancel", "filter": {"business_key": "bulk-run"}, "reason": "stop all"}
    dry = api.post("/v1/jobs/bulk", json=body | {"dry_run": True}).json()
    assert (dry["matched"], dry["not_eligible"]) == (2, {})
    done = api.post("/v1/jobs/bulk", json=body).json()
    assert (done["matched"], done["changed"]) == (2, 2)
    assert _statuses(api, [waiting, held]) == ["cancelled", "running"]
    assert api.get(f"/v1/jobs/{held}").json()["cancel_requested_at"] is not None
    (entry,) = api.get("/v1/audit").json()["items"]
    assert entry["counts"] == {"matched": 2, "cancelled": 1, "stopping": 1}


def test_bad_bulk_requests_are_refused_and_change_nothing(api: TestClient[Any], settings: Settings) -> None:
    (job,) = _enqueue(api, [{"type": "test_flaky", "payload": {}, "delay_seconds": 3600}])
    far = (utcnow() + timedelta(days=4000)).isoformat()
    bad = [
        {"action": "cancel", "ids": [job], "filter": {}, "reason": "both"},
        {"action": "cancel", "reason": "neither"},
        {"action": "cancel", "ids": [job], "reason": "   "},
        {"action": "cancel", "ids": [job]},
        {"action": "explode", "ids": [job], "reason": "x"},
        {"action": "reschedule", "ids": [job], "reason": "no time"},
        {"action": "reschedule", "ids": [job], "reason": "too far", "run_at": far},
        {"action": "reschedule", "ids": [job], "reason": "no zone", "run_at": "2027-01-01T00:00:00"},
        {"action": "cancel", "ids": [job], "reason": "a time", "run_at": far},
        {"action": "cancel", "filter": {"status": "exploded"}, "reason": "x"},
        {"action": "cancel", "filter": {"nope": 1}, "reason": "x"},
        {"action": "cancel", "ids": ["not-a-uuid"], "reason": "x"},
    ]
    for body in bad:
        r = api.post("/v1/jobs/bulk", json=body)
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("validation_error", "malformed_json"), r.text
    r = api.post(
        "/v1/jobs/bulk", json={"action": "reschedule", "ids": [job], "reason": "too far", "run_at": far}
    )
    assert "ten years" in r.text
    viewer = make_key(settings, "ops:read", name="viewer")
    r = api.post(
        "/v1/jobs/bulk",
        json={"action": "cancel", "ids": [job], "reason": "look"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403
    assert api.get(f"/v1/jobs/{job}").json()["status"] == "scheduled"
    assert api.get("/v1/audit").json()["items"] == []
