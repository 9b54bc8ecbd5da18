"""Dead letters and their audit trail per tenant: a tenant's ops key lists, searches, redrives and
discards only its own tenant's dead letters, whatever ids or filter it sends; its audit entries are
its own; a job records the key that redrove or discarded it; an admin key reaches every tenant."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.integration.conftest import make_key
from tests.integration.engine.test_dead_letters import insert_dead


def _ops(settings: Settings, tenant: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {make_key(settings, 'ops', 'jobs:read', name=f'{tenant} ops', tenant=tenant)}"
    }


def _key_id(api: TestClient[Any], name: str) -> str:
    (key,) = [k for k in api.get("/v1/keys").json()["items"] if k["name"] == name]
    return str(key["id"])


def test_an_ops_key_reaches_only_its_tenants_dead_letters(api: TestClient[Any], settings: Settings) -> None:
    mine = insert_dead(settings, 3, tenant="shop-a")
    theirs = insert_dead(settings, 2, tenant="shop-b")
    ops_a = _ops(settings, "shop-a")

    listed = api.get("/v1/dead-letters", headers=ops_a).json()["items"]
    assert sorted(j["id"] for j in listed) == sorted(mine)
    searched = api.get("/v1/dead-letters", params={"q": "permanent"}, headers=ops_a).json()["items"]
    assert {j["tenant"] for j in searched} == {"shop-a"}
    assert len(api.get("/v1/dead-letters").json()["items"]) == 5  # the admin key sees both

    # Another tenant's ids match nothing: not in a dry run, not in a redrive, not in a discard.
    for action in ("redrive", "discard"):
        for dry_run in (True, False):
            body = {"ids": theirs, "reason": "not mine", "dry_run": dry_run}
            r = api.post(f"/v1/dead-letters/{action}", json=body, headers=ops_a)
            assert r.status_code == 200 and r.json()["matched"] == 0, r.text
    # Nor does a filter that would match every dead letter.
    everything = {"filter": {}, "reason": "all of them", "dry_run": True}
    assert api.post("/v1/dead-letters/discard", json=everything, headers=ops_a).json()["matched"] == 3
    still = api.get("/v1/dead-letters", params={"type": "test_flaky"}).json()["items"]
    assert sorted(j["id"] for j in still if j["tenant"] == "shop-b") == sorted(theirs)

    # Its own it redrives and discards; the jobs record the key, the audit entry the tenant.
    redriven = api.post(
        "/v1/dead-letters/redrive", json={"ids": mine[:1], "reason": "fixed the cause"}, headers=ops_a
    ).json()
    assert (redriven["matched"], redriven["redriven"]) == (1, 1)
    discarded = api.post(
        "/v1/dead-letters/discard", json={"filter": {}, "reason": "given up"}, headers=ops_a
    ).json()
    assert (discarded["matched"], discarded["discarded"]) == (2, 2)
    key_id = _key_id(api, "shop-a ops")
    assert api.get(f"/v1/jobs/{mine[0]}").json()["redriven_by"] == key_id
    assert {api.get(f"/v1/jobs/{i}").json()["cancelled_by"] for i in mine[1:]} == {key_id}
    assert {api.get(f"/v1/jobs/{i}").json()["status"] for i in theirs} == {"dead"}

    # Every action is on record, the two that matched nothing too (oldest last).
    own_audit = api.get("/v1/audit", headers=ops_a).json()["items"]
    assert [(e["action"], e["tenant"], e["counts"]["matched"]) for e in own_audit] == [
        ("discard", "shop-a", 2),
        ("redrive", "shop-a", 1),
        ("discard", "shop-a", 0),
        ("redrive", "shop-a", 0),
    ]
    assert api.get("/v1/audit", headers=_ops(settings, "shop-b")).json()["items"] == []


def test_an_admin_key_redrives_across_tenants_and_its_audit_entry_says_so(
    api: TestClient[Any], settings: Settings
) -> None:
    ids = insert_dead(settings, 1, tenant="shop-a") + insert_dead(settings, 1, tenant="shop-b")
    out = api.post("/v1/dead-letters/discard", json={"ids": ids, "reason": "outage over"}).json()
    assert (out["matched"], out["discarded"]) == (2, 2)
    (entry,) = api.get("/v1/audit").json()["items"]
    assert entry["tenant"] is None and entry["selection"] == {"ids": ids}
    # A tenant's ops key does not see the admin's entry, though it touched its jobs.
    assert api.get("/v1/audit", headers=_ops(settings, "shop-a")).json()["items"] == []
