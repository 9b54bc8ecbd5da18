"""LLM providers per tenant: two tenants with their own (fake) OpenAI-compatible servers each get their
`ai_reply` jobs answered by their own server, with their own key; a tenant without a chain asks the
farm's; a changed chain applies to the next job without a restart, and a removed one puts the tenant
back on the farm's; another tenant's chain answers 404; the keys appear in no answer, audit entry or
log line; a base URL at a loopback, private or metadata address is refused when set, and again by
the worker when it connects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from control_api.app import create_app
from core.chats.tenant_llm import sealing_context
from core.platform.crypto import data_cipher, looks_sealed
from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import tenant_llm
from tests.fakes.openai import FakeOpenAI
from tests.integration.conftest import Farm, JobWaiter, make_key
from tests.services import wait_for

FARM_KEY = "sk-farm-key-0000000000000000"
#: Each tenant's own provider: its name, api key and model.
PROVIDERS = {
    "shop-a": ("a-main", "sk-shop-a-key-AAAA1111", "a-model"),
    "shop-b": ("b-main", "sk-shop-b-key-BBBB2222", "b-model"),
}
#: The fake servers run on 127.0.0.1: the farm in these tests lets tenants' providers be there.
ALLOW_LOCAL = ("127.0.0.1",)


@pytest.fixture
def servers() -> Iterator[dict[str, FakeOpenAI]]:
    fakes = {name: FakeOpenAI(name) for name in ("farm", "shop-a", "shop-b")}
    yield fakes
    for fake in fakes.values():
        fake.close()


@pytest.fixture
def settings(settings: Settings, servers: dict[str, FakeOpenAI]) -> Settings:
    """The farm's own provider on one fake server; tenants' providers may be on 127.0.0.1."""
    return settings.replace(
        openai_base_url=servers["farm"].base_url,
        openai_api_key=FARM_KEY,
        llm_model="farm-model",
        llm_allow_hosts=ALLOW_LOCAL,
    )


def _key(settings: Settings, tenant: str) -> dict[str, str]:
    secret = make_key(settings, "ops", "jobs:read", "jobs:write", name=f"{tenant} ops", tenant=tenant)
    return {"Authorization": f"Bearer {secret}"}


def _chain(tenant: str, server: FakeOpenAI, **changes: Any) -> dict[str, Any]:
    name, api_key, model = PROVIDERS[tenant]
    return {
        "providers": [
            {"name": name, "base_url": server.base_url, "api_key": api_key, "model": model, **changes}
        ]
    }


def _reply(api: TestClient[Any], headers: dict[str, str], chat_id: str, message: str) -> str:
    body = {"type": "ai_reply", "payload": {"chat_id": chat_id, "user_id": "u1", "message": message}}
    r = api.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_each_tenant_is_answered_by_its_own_providers_with_its_own_key(
    api: TestClient[Any],
    farm: Farm,
    settings: Settings,
    servers: dict[str, FakeOpenAI],
    wait_job: JobWaiter,
) -> None:
    keys = {tenant: _key(settings, tenant) for tenant in ("shop-a", "shop-b", "shop-c")}
    answers: list[str] = []  # every answer's text: no api key may be in any of them
    for tenant in PROVIDERS:
        r = api.put(f"/v1/tenants/{tenant}/llm", json=_chain(tenant, servers[tenant]), headers=keys[tenant])
        assert r.status_code == 201, r.text
        answers.append(r.text)
    # The farm's own OpenAI account, which the SDK reads from the environment: for the farm's
    # provider only, never sent to a tenant's.
    farm.env["OPENAI_ORG_ID"] = "org-of-the-farm"
    farm.worker()

    jobs = {tenant: _reply(api, headers, "c1", f"hello from {tenant}") for tenant, headers in keys.items()}
    done = {tenant: wait_job(job_id, timeout=60) for tenant, job_id in jobs.items()}
    for tenant, (name, api_key, model) in PROVIDERS.items():
        server = servers[tenant]
        assert server.calls() == 1, tenant
        assert server.authorizations == [f"Bearer {api_key}"]
        assert server.organizations == [None], tenant
        assert server.requests[0]["model"] == model
        assert server.requests[0]["messages"][-1] == {"role": "user", "content": f"hello from {tenant}"}
        assert (done[tenant]["result"]["provider"], done[tenant]["result"]["model"]) == (name, model)
    # shop-c has no chain of its own: the farm's provider answered it, and only it.
    assert servers["farm"].authorizations == [f"Bearer {FARM_KEY}"]
    assert servers["farm"].organizations == ["org-of-the-farm"]
    assert servers["farm"].requests[0]["messages"][-1]["content"] == "hello from shop-c"
    assert done["shop-c"]["result"]["provider"] == "default"

    # The stored replies record who answered, each in its tenant's chat c1.
    for tenant, provider in (("shop-a", "a-main"), ("shop-b", "b-main"), ("shop-c", "default")):
        messages = api.get("/v1/chats/c1/messages", headers=keys[tenant]).json()["items"]
        assert (messages[0]["role"], messages[0]["provider"]) == ("assistant", provider)
        assert (
            messages[0]["content"]
            == f"{servers[tenant if tenant != 'shop-c' else 'farm'].name} says: re hello from {tenant}"
        )

    # A new key is used from the next job on, by the running worker.
    new_key = "sk-shop-a-key-rotated-3333"
    r = api.put(
        "/v1/tenants/shop-a/llm",
        json=_chain("shop-a", servers["shop-a"], api_key=new_key),
        headers=keys["shop-a"],
    )
    assert r.status_code == 200, r.text
    answers.append(r.text)
    wait_job(_reply(api, keys["shop-a"], "c2", "with the new key"), timeout=60)
    assert servers["shop-a"].authorizations[-1] == f"Bearer {new_key}"

    # Removed: shop-a's next reply comes from the farm's provider.
    assert api.delete("/v1/tenants/shop-a/llm", headers=keys["shop-a"]).status_code == 204
    back = wait_job(_reply(api, keys["shop-a"], "c3", "and now?"), timeout=60)
    assert back["result"]["provider"] == "default"
    assert servers["farm"].calls() == 2 and servers["shop-a"].calls() == 2
    assert servers["shop-b"].calls() == 1

    # No key in any answer, any audit entry, nor in any line the worker logged.
    answers += [api.get(f"/v1/tenants/{t}/llm").text for t in PROVIDERS]
    answers.append(api.get("/v1/audit").text)
    secrets = [api_key for _, api_key, _ in PROVIDERS.values()] + [new_key, FARM_KEY]
    for text in [*answers, *(p.log() for p in farm.processes)]:
        assert not [s for s in secrets if s in text], text


def test_only_the_tenant_or_an_admin_sets_reads_and_removes_a_tenants_chain(
    api: TestClient[Any], settings: Settings, servers: dict[str, FakeOpenAI]
) -> None:
    keys = {tenant: _key(settings, tenant) for tenant in PROVIDERS}
    reader = {"Authorization": f"Bearer {make_key(settings, 'jobs:read', 'jobs:write', tenant='shop-a')}"}
    assert (
        api.put(
            "/v1/tenants/shop-a/llm", json=_chain("shop-a", servers["shop-a"]), headers=reader
        ).status_code
        == 403
    )

    # Another tenant's chain: 404 to every method, as a tenant without one; nothing is changed.
    assert (
        api.put(
            "/v1/tenants/shop-b/llm", json=_chain("shop-b", servers["shop-b"]), headers=keys["shop-b"]
        ).status_code
        == 201
    )
    for method in ("GET", "DELETE"):
        r = api.request(method, "/v1/tenants/shop-b/llm", headers=keys["shop-a"])
        assert (r.status_code, r.json()["error"]["code"]) == (404, "tenant_llm_not_found"), (method, r.text)
    hijack = api.put(
        "/v1/tenants/shop-b/llm",
        json=_chain("shop-b", servers["shop-a"], api_key="sk-stolen-key-12345678"),
        headers=keys["shop-a"],
    )
    assert (hijack.status_code, hijack.json()["error"]["code"]) == (404, "tenant_llm_not_found")
    with transaction(settings) as conn:
        row = conn.execute(sa.select(tenant_llm)).one()
    assert row.tenant == "shop-b" and row.updated_by is not None
    (stored,) = row.providers
    assert stored["base_url"] == servers["shop-b"].base_url and "api_key" not in stored
    # Sealed, bound to its tenant and provider: nothing in clear in Postgres.
    assert looks_sealed(stored["api_key_sealed"]) and PROVIDERS["shop-b"][1] not in json.dumps(row.providers)
    assert (
        data_cipher().open(stored["api_key_sealed"], sealing_context("shop-b", "b-main"))
        == PROVIDERS["shop-b"][1]
    )

    # The answer shows the providers, whether a key is set and its last four characters, never a key.
    shown = api.get("/v1/tenants/shop-b/llm", headers=keys["shop-b"]).json()
    assert shown == api.get("/v1/tenants/shop-b/llm").json()  # the admin key reads any tenant's
    assert shown["tenant"] == "shop-b"
    assert shown["providers"] == [
        {
            "name": "b-main",
            "base_url": servers["shop-b"].base_url,
            "model": "b-model",
            "api_key_set": True,
            "api_key_last4": "2222",
        }
    ]
    assert PROVIDERS["shop-b"][1] not in json.dumps(shown)
    assert api.get("/v1/tenants/shop-a/llm", headers=keys["shop-a"]).status_code == 404

    # Bad chains: a name twice, too many, a short key, an unknown field, none at all.
    one = {"name": "p", "base_url": servers["shop-a"].base_url}
    for body, field in (
        ({"providers": [one, one]}, "providers[1].name"),
        ({"providers": [{**one, "name": f"p{i}"} for i in range(9)]}, None),
        ({"providers": [{**one, "api_key": "short"}]}, None),
        ({"providers": [{**one, "api_kee": "sk-typo-1234567890"}]}, None),
        ({"providers": []}, None),
        ({"providers": [{**one, "name": "bad name"}]}, None),
    ):
        r = api.put("/v1/tenants/shop-a/llm", json=body, headers=keys["shop-a"])
        assert r.status_code == 422, (body, r.text)
        assert "short" not in r.text and "sk-typo" not in r.text
        if field is not None:
            assert [d["field"] for d in r.json()["error"]["details"]] == [field]

    # Replaced (200), by the admin key too, then removed; each change is in the tenant's audit log.
    two = {
        "providers": [
            *_chain("shop-b", servers["shop-b"])["providers"],
            {"name": "spare", "base_url": "https://1.1.1.1/v1"},
        ]
    }
    r = api.put("/v1/tenants/shop-b/llm", json=two)
    assert r.status_code == 200, r.text
    assert [(p["name"], p["api_key_set"], p["api_key_last4"]) for p in r.json()["providers"]] == [
        ("b-main", True, "2222"),
        ("spare", False, None),
    ]
    assert api.delete("/v1/tenants/shop-b/llm", headers=keys["shop-b"]).status_code == 204
    assert api.get("/v1/tenants/shop-b/llm").status_code == 404
    assert api.delete("/v1/tenants/shop-b/llm").status_code == 404
    entries = api.get("/v1/audit", headers=keys["shop-b"]).json()["items"]
    assert [(e["action"], e["tenant"]) for e in entries] == [
        ("llm_providers_delete", "shop-b"),
        ("llm_providers_set", "shop-b"),
        ("llm_providers_set", "shop-b"),
    ]
    assert entries[1]["selection"] == {"tenant": "shop-b", "providers": ["b-main", "spare"]}
    assert api.get("/v1/audit", headers=keys["shop-a"]).json()["items"] == []
    assert PROVIDERS["shop-b"][1] not in json.dumps(entries)


@pytest.mark.parametrize(
    ("base_url", "why"),
    [
        ("http://127.0.0.1:8000/v1", "loopback"),
        ("http://localhost:8000/v1", "loopback"),
        ("http://[::1]:8000/v1", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/v1", "private"),
        ("http://192.168.1.20:11434/v1", "private"),
        ("http://[::ffff:10.0.0.1]/v1", "private"),
        ("ftp://llm.example/v1", "http:// or https://"),
        ("https://user:pw@1.1.1.1/v1", "credentials"),
        ("not a url", "http:// or https://"),
        ("http://[fd00::1]/v1", "private"),
    ],
)
def test_a_base_url_the_farm_may_not_call_is_refused_when_set(
    settings: Settings, admin_key: str, base_url: str, why: str
) -> None:
    strict = settings.replace(llm_allow_hosts=())  # no exceptions: the default
    with TestClient(create_app(strict, configure_logs=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        body = {
            "providers": [
                {"name": "ok", "base_url": "https://1.1.1.1/v1"},
                {"name": "bad", "base_url": base_url},
            ]
        }
        r = client.put("/v1/tenants/shop-a/llm", json=body)
        assert r.status_code == 422, r.text
        (detail,) = r.json()["error"]["details"]
        assert detail["field"] == "providers[1].base_url"
        assert why in detail["message"], detail
        assert client.get("/v1/tenants/shop-a/llm").status_code == 404  # nothing was stored


def test_the_worker_checks_the_address_again_when_it_connects(
    api: TestClient[Any],
    farm: Farm,
    settings: Settings,
    servers: dict[str, FakeOpenAI],
    wait_job: JobWaiter,
) -> None:
    """The API accepted both base URLs; the worker's allow list holds only the pinned name (as if the
    first name now resolved to a private address): it never connects to the first, and the chain
    fails over to the second, reached at the address its pin names."""
    pinned = "llm-b.test=127.0.0.1"  # the fake's address
    api_settings = settings.replace(llm_allow_hosts=(*ALLOW_LOCAL, pinned))
    farm.settings = settings.replace(llm_allow_hosts=(pinned,))
    headers = _key(settings, "shop-a")
    body = {
        "providers": [
            {"name": "inside", "base_url": servers["shop-a"].base_url, "api_key": "sk-inside-key-12345678"},
            {
                "name": "pinned",
                "base_url": f"http://llm-b.test:{servers['shop-b'].port}/v1",
                "api_key": "sk-pinned-key-87654321",
            },
        ]
    }
    with TestClient(create_app(api_settings, configure_logs=False)) as client:
        assert client.put("/v1/tenants/shop-a/llm", json=body, headers=headers).status_code == 201
    farm.worker()
    job = wait_job(_reply(api, headers, "c1", "hello"), timeout=60)
    assert job["result"]["provider"] == "pinned"
    assert servers["shop-a"].calls() == 0  # refused before any connection
    assert servers["shop-b"].authorizations == ["Bearer sk-pinned-key-87654321"]
    (worker,) = farm.processes
    # Every line of the job is in (an INFO line may wait a tenth of a second to be written).
    log = wait_for(lambda: '"job_succeeded"' in worker.log() and worker.log(), what="the job's last line")
    assert '"llm_address_refused"' in log and '"provider": "inside"' in log
    assert "sk-inside-key-12345678" not in log and "sk-pinned-key-87654321" not in log


def test_no_tenant_api_key_reaches_the_api_log(
    farm: Farm, settings: Settings, servers: dict[str, FakeOpenAI]
) -> None:
    """A real API process: setting, replacing and reading a chain, and bad requests carrying a key; its
    log holds none of the keys."""
    _, base = farm.api()
    headers = _key(settings, "shop-a")
    body = _chain("shop-a", servers["shop-a"])
    api_key = PROVIDERS["shop-a"][1]
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        assert client.put("/v1/tenants/shop-a/llm", json=body).status_code == 201
        assert client.put("/v1/tenants/shop-a/llm", json=body).status_code == 200
        assert client.get("/v1/tenants/shop-a/llm").json()["providers"][0]["api_key_last4"] == "1111"
        bad = client.put(
            "/v1/tenants/shop-a/llm", json=_chain("shop-a", servers["shop-a"], base_url="http://10.0.0.1/v1")
        )
        assert bad.status_code == 422 and api_key not in bad.text
        bad = client.put(
            "/v1/tenants/shop-a/llm", json=_chain("shop-a", servers["shop-a"], name=f"{api_key}!")
        )
        assert bad.status_code == 422 and api_key not in bad.text
    (api,) = farm.processes
    log = wait_for(
        lambda: api.log().count('"status": 422') >= 2 and api.log(), what="the last request's line"
    )
    assert '"path": "/v1/tenants/shop-a/llm"' in log
    assert api_key not in log
