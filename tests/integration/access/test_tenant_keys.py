"""Tenants of API keys: every key belongs to a tenant, an ops key manages only its own tenant's keys
(another tenant's answers 404, as if it did not exist), and only an admin key reaches across."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from tests import services as test_services
from tests.integration.conftest import database_at
from tests.services import jobyard

HOSTILE_TENANTS = [
    "Shop-A",  # upper case
    "-shop",
    "shop-",
    "a" * 64,
    "shop a",
    "shop/a",
    "../default",
    "shop\u0000a",
    "shop:a",  # a separator inside Redis keys
    "shöp",
    "",
]


def _as(api: TestClient[Any], secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_an_ops_key_manages_only_its_own_tenants_keys(api: TestClient[Any], settings: Settings) -> None:
    made = api.post("/v1/keys", json={"name": "shop-a ops", "scopes": ["ops"], "tenant": "shop-a"})
    assert made.status_code == 201, made.text
    assert made.json()["key"]["tenant"] == "shop-a"
    ops_a = _as(api, made.json()["secret"])
    other = api.post("/v1/keys", json={"name": "shop-b writer", "scopes": ["jobs:write"], "tenant": "shop-b"})
    other_id = other.json()["key"]["id"]

    # Made without a tenant, a key is its maker's tenant's.
    own = api.post("/v1/keys", json={"name": "shop-a writer", "scopes": ["jobs:write"]}, headers=ops_a)
    assert (own.status_code, own.json()["key"]["tenant"]) == (201, "shop-a")
    listed = api.get("/v1/keys", headers=ops_a).json()["items"]
    assert {k["name"] for k in listed} == {"shop-a ops", "shop-a writer"}
    assert {k["tenant"] for k in api.get("/v1/keys").json()["items"]} >= {"default", "shop-a", "shop-b"}

    # Another tenant's key does not exist for it: read, rotate and revoke all answer 404.
    for method, path in (
        ("GET", f"/v1/keys/{other_id}"),
        ("POST", f"/v1/keys/{other_id}/rotate"),
        ("POST", f"/v1/keys/{other_id}/revoke"),
    ):
        r = api.request(method, path, headers=ops_a)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "key_not_found"), (path, r.text)
    still = api.get(f"/v1/keys/{other_id}").json()
    assert still["revoked_at"] is None and still["replaced_by"] is None

    # Its own keys it rotates and revokes; the new key stays in its tenant.
    rotated = api.post(f"/v1/keys/{own.json()['key']['id']}/rotate", headers=ops_a)
    assert (rotated.status_code, rotated.json()["key"]["tenant"]) == (201, "shop-a")
    revoked = api.post(f"/v1/keys/{rotated.json()['key']['id']}/revoke", headers=ops_a)
    assert revoked.json()["revoked_at"] is not None


def test_only_an_admin_key_makes_keys_for_another_tenant_or_keys_holding_admin(api: TestClient[Any]) -> None:
    made = api.post("/v1/keys", json={"name": "shop-a ops", "scopes": ["ops"], "tenant": "shop-a"})
    ops_a = _as(api, made.json()["secret"])
    for body in (
        {"name": "x", "scopes": ["jobs:write"], "tenant": "shop-b"},
        {"name": "x", "scopes": ["jobs:write"], "tenant": "default"},
        {"name": "x", "scopes": ["ops", "admin"]},
    ):
        r = api.post("/v1/keys", json=body, headers=ops_a)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), (body, r.text)
    names = {k["name"] for k in api.get("/v1/keys").json()["items"]}
    assert "x" not in names
    # The admin key (the fixture's, holding every scope) may.
    made = api.post("/v1/keys", json={"name": "y", "scopes": ["ops", "admin"], "tenant": "shop-b"})
    assert made.status_code == 201 and made.json()["key"]["scopes"] == ["admin", "ops"]


@pytest.mark.parametrize("tenant", HOSTILE_TENANTS)
def test_a_tenant_name_is_a_slug_or_a_clear_422(api: TestClient[Any], tenant: str) -> None:
    r = api.post("/v1/keys", json={"name": "x", "scopes": ["jobs:read"], "tenant": tenant})
    assert r.status_code == 422, r.text
    assert all(k["name"] != "x" for k in api.get("/v1/keys").json()["items"])


def test_the_command_line_makes_a_tenants_key_and_refuses_a_bad_name(settings: Settings) -> None:
    made = jobyard(settings, "keys", "create", "shop-a writer", "--scope", "jobs:write", "--tenant", "shop-a")
    assert made.returncode == 0, made.stderr
    assert "of tenant shop-a" in made.stdout
    listed = [json.loads(line) for line in jobyard(settings, "keys", "list", "--json").stdout.splitlines()]
    assert [k["tenant"] for k in listed if k["name"] == "shop-a writer"] == ["shop-a"]
    bad = jobyard(settings, "keys", "create", "x", "--scope", "jobs:read", "--tenant", "Shop A")
    assert bad.returncode == 2 and "--tenant" in bad.stderr


@pytest.fixture
def at_0012(services: test_services.TestServices, settings: Settings) -> Iterator[Settings]:
    with database_at(services, settings, "0012") as migrated:
        yield migrated


def test_upgrading_puts_every_key_in_the_default_tenant_and_ops_keys_keep_their_reach(
    at_0012: Settings,
) -> None:
    with transaction(at_0012) as conn:
        for name, scopes in (("ops", ["jobs:read", "ops"]), ("writer", ["jobs:write"])):
            conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes) "
                    "VALUES (gen_random_uuid(), :name, 'jy_x', md5(:name), :scopes)"
                ),
                {"name": name, "scopes": scopes},
            )
    upgrade(at_0012, "head")
    with transaction(at_0012) as conn:
        rows = conn.execute(sa.text("SELECT name, tenant, scopes FROM api_keys ORDER BY name")).all()
    assert [tuple(r) for r in rows] == [
        ("ops", "default", ["admin", "jobs:read", "ops"]),
        ("writer", "default", ["jobs:write"]),
    ]
