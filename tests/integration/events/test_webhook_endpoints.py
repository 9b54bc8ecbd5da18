"""Webhook endpoints through the API (in-process, real Postgres): hostile URLs, the secret shown once,
rotation, and requests that cannot be read. Another tenant's endpoints: the isolation walk
(tests/integration/access/test_isolation_walk.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import webhook_endpoints

PUBLIC = "https://93.184.215.14/hooks"


def _create(api: TestClient[Any], url: str = PUBLIC, **more: Any) -> Any:
    return api.post("/v1/webhook-endpoints", json={"url": url, "events": ["job.succeeded"], **more})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",  # the farm's own API
        "http://localhost/hooks",
        "http://[::1]/hooks",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://10.0.0.5/hooks",
        "http://[::ffff:127.0.0.1]/hooks",  # loopback, written as IPv6
        "http://2130706433/hooks",  # 127.0.0.1 as one number
        "http://no-such-host.invalid/hooks",
        "ftp://93.184.215.14/hooks",
        "file:///etc/passwd",
        "https://user:password@93.184.215.14/hooks",
        "https://93.184.215.14/hooks#part",
        "https://93.184.215.14:99999/hooks",
        "not a url",
    ],
)
def test_urls_that_reach_inside_the_farm_or_cannot_be_called_are_refused(
    api: TestClient[Any], url: str
) -> None:
    answer = _create(api, url)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "webhook_url_refused"


def test_an_overlong_url_or_unknown_events_are_refused_by_field(api: TestClient[Any]) -> None:
    assert _create(api, "https://93.184.215.14/" + "a" * 3000).status_code == 422
    unknown = api.post("/v1/webhook-endpoints", json={"url": PUBLIC, "events": ["job.exploded"]})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "events"
    assert api.post("/v1/webhook-endpoints", json={"url": PUBLIC, "events": []}).status_code == 422


def test_the_secret_is_shown_once_kept_sealed_and_rotated_with_a_grace(
    api: TestClient[Any], settings: Settings
) -> None:
    made = _create(api, description="orders")
    assert made.status_code == 201
    endpoint, secret = made.json()["endpoint"], made.json()["secret"]
    for shown in (api.get(f"/v1/webhook-endpoints/{endpoint['id']}"), api.get("/v1/webhook-endpoints")):
        assert shown.status_code == 200 and secret not in shown.text and "secret_sealed" not in shown.text
    with transaction(settings) as conn:
        sealed = conn.execute(sa.select(webhook_endpoints.c.secret_sealed)).scalar_one()
    assert secret not in sealed and secret.removeprefix("whsec_") not in sealed

    rotated = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_s": 3600})
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != secret
    assert rotated.json()["endpoint"]["previous_secret_until"] is not None
    at_once = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_s": 0})
    assert at_once.json()["endpoint"]["previous_secret_until"] is None
    too_long = api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", json={"grace_s": 10**9})
    assert too_long.status_code == 422


def test_patching_checks_what_it_changes_and_delete_removes(api: TestClient[Any]) -> None:
    endpoint = _create(api).json()["endpoint"]
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert (
        api.patch(path, json={"url": "http://127.0.0.1/x"}).json()["error"]["code"] == "webhook_url_refused"
    )
    changed = api.patch(path, json={"events": ["job.dead", "job.dead"], "types": ["embed"]}).json()
    assert (changed["events"], changed["types"], changed["url"]) == (["job.dead"], ["embed"], PUBLIC)
    off = api.patch(path, json={"enabled": False}).json()
    assert off["enabled"] is False and off["disabled_reason"] == "disabled by a caller"
    assert api.patch(path, json={"secret": "whsec_x"}).status_code == 422  # not a field one may set
    assert api.delete(path).status_code == 204
    assert api.get(path).json()["error"]["code"] == "webhook_endpoint_not_found"


def test_a_redrive_names_its_deliveries_one_way_and_gives_a_reason(api: TestClient[Any]) -> None:
    redrive = "/v1/webhook-deliveries/redrive"
    both = api.post(redrive, json={"ids": [1], "filter": {}, "reason": "x"})
    assert both.status_code == 422
    assert api.post(redrive, json={"filter": {}, "reason": "   "}).status_code == 422
    assert api.post(redrive, json={"ids": [0], "reason": "x"}).status_code == 422
    none = api.post(redrive, json={"filter": {}, "reason": "nothing is dead"}).json()
    assert (none["matched"], none["redriven"], none["audit_id"]) == (0, 0, None)
    assert api.get("/v1/webhook-deliveries", params={"cursor": "'; drop table"}).status_code == 400
    assert api.get("/v1/webhook-deliveries", params={"status": "lost"}).status_code == 422
