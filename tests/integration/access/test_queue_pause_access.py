"""Who may pause a queue, and what a pause request may name: only a key holding `ops` and reaching
every tenant (`admin`) pauses, since a queue is the whole farm's; only the catalog's queues exist;
a reason is required (as for a dead-letter redrive); pausing twice is one pause and one audit entry.
Also the CLI (`jobyard queues`) and the /metrics gauge."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, queue_pauses
from tests.integration.access.test_sessions import SESSION_TOKEN, dashboard_login
from tests.integration.conftest import count_rows, make_key
from tests.services import JOBYARD, settings_env

QUEUE = "test_echo"


def _as(settings: Settings, *scopes: str, tenant: str = "default") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(settings, *scopes, name='k', tenant=tenant)}"}


def _nothing_paused(settings: Settings) -> bool:
    return count_rows(settings, queue_pauses) == 0 and count_rows(settings, audit_log) == 0


@pytest.mark.parametrize(
    ("scopes", "tenant"),
    [
        (("ops",), "shop-a"),  # a tenant's ops key: the queue is every tenant's
        (("ops",), "default"),  # ops without admin reaches its own tenant only
        (("ops:read", "admin"), "default"),  # sees, changes nothing
        (("jobs:write", "admin"), "default"),
    ],
)
def test_a_key_without_ops_or_without_every_tenants_reach_is_refused(
    api: TestClient[Any], settings: Settings, scopes: tuple[str, ...], tenant: str
) -> None:
    headers = _as(settings, *scopes, tenant=tenant)
    for action in ("pause", "resume"):
        answer = api.post(f"/v1/queues/{QUEUE}/{action}", json={"reason": "r"}, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"
    assert _nothing_paused(settings)
    # The admin's ops key may.
    allowed = api.post(
        f"/v1/queues/{QUEUE}/pause", json={"reason": "r"}, headers=_as(settings, "ops", "admin")
    )
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize(
    "name",
    [
        "nope",
        "test_echo.DQ",  # Dramatiq's delay queue of a real queue
        "default.DQ",
        "test_echo.XQ",
        "%2E%2E",
        "test_echo%00",
        "jyt00000000:test_echo",  # a Redis namespace prefix
        "__acks__.x.test_echo",
        "paused-queues",
        "TEST_ECHO",
        "t%C3%A9st_echo",  # unicode
        "%F0%9F%98%80",
        "x" * 3000,
    ],
)
def test_a_queue_no_job_type_uses_is_404_queue_not_found(
    api: TestClient[Any], settings: Settings, name: str
) -> None:
    for action in ("pause", "resume"):
        answer = api.post(f"/v1/queues/{name}/{action}", json={"reason": "outage"})
        assert answer.status_code == 404, (name, answer.text)
        assert answer.json()["error"]["code"] == "queue_not_found", answer.text
        assert len(answer.text) < 1000  # a very long name is not echoed whole
    assert _nothing_paused(settings)


@pytest.mark.parametrize(
    "body",
    [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 2001}, {"reason": 5}, {"reason": "r", "x": 1}],
)
def test_a_pause_needs_a_reason(api: TestClient[Any], settings: Settings, body: dict[str, Any]) -> None:
    answer = api.post(f"/v1/queues/{QUEUE}/pause", json=body)
    assert answer.status_code == 422, answer.text
    assert _nothing_paused(settings)


def test_pausing_twice_is_one_pause_and_resuming_twice_one_resume(
    api: TestClient[Any], settings: Settings
) -> None:
    dry = api.post(f"/v1/queues/{QUEUE}/pause", json={"reason": "first", "dry_run": True}).json()
    assert (dry["dry_run"], dry["changed"], dry["paused"]) == (True, False, False)
    assert _nothing_paused(settings)

    first = api.post(f"/v1/queues/{QUEUE}/pause", json={"reason": "first"}).json()
    again = api.post(f"/v1/queues/{QUEUE}/pause", json={"reason": "second"}).json()
    assert (first["changed"], again["changed"], again["audit_id"]) == (True, False, None)
    assert (again["reason"], again["paused_at"], again["paused"]) == ("first", first["paused_at"], True)

    done = api.post(f"/v1/queues/{QUEUE}/resume", json={}).json()
    twice = api.post(f"/v1/queues/{QUEUE}/resume", json={}).json()
    assert (done["changed"], twice["changed"], twice["audit_id"], twice["paused"]) == (
        True,
        False,
        None,
        False,
    )

    entries = api.get("/v1/audit").json()["items"]
    assert [(e["action"], e["selection"], e["reason"], e["tenant"]) for e in entries] == [
        ("resume_queue", {"filter": {"queue": QUEUE}}, "", None),
        ("pause_queue", {"filter": {"queue": QUEUE}}, "first", None),
    ]


def test_metrics_show_which_queues_are_paused(api: TestClient[Any]) -> None:
    assert api.post(f"/v1/queues/{QUEUE}/pause", json={"reason": "outage"}).status_code == 200
    text = api.get("/metrics").text
    assert f'jobyard_queue_paused{{queue="{QUEUE}"}} 1.0' in text
    assert 'jobyard_queue_paused{queue="unread_count"} 0.0' in text


def test_a_tenants_key_sees_the_pause_but_not_who_paused(api: TestClient[Any], settings: Settings) -> None:
    assert api.post(f"/v1/queues/{QUEUE}/pause", json={"reason": "outage"}).status_code == 200
    queues = api.get("/v1/queues", headers=_as(settings, "ops", tenant="shop-a")).json()["queues"]
    [shown] = [q for q in queues if q["name"] == QUEUE]
    assert (shown["paused"], shown["reason"], shown["paused_by"]) == (True, "outage", None)


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBYARD, "queues", *args], env=settings_env(settings), capture_output=True, text=True, timeout=60
    )


def test_the_cli_pauses_lists_and_resumes(api: TestClient[Any], settings: Settings) -> None:
    unknown = _cli(settings, "pause", "default.DQ", "--reason", "x")
    assert unknown.returncode == 2 and "no job type uses the queue 'default.DQ'" in unknown.stderr

    paused = _cli(settings, "pause", QUEUE, "--reason", "LLM outage")
    assert paused.returncode == 0, paused.stderr
    assert f"{QUEUE} paused" in paused.stdout and "audit entry" in paused.stdout

    listed = [json.loads(line) for line in _cli(settings, "list", "--json").stdout.splitlines()]
    [row] = [q for q in listed if q["name"] == QUEUE]
    assert (row["paused"], row["reason"], row["paused_by"]) == (True, "LLM outage", row["paused_by"])
    assert row["paused_by"].startswith("cli:")
    assert next(q for q in api.get("/v1/queues").json()["queues"] if q["name"] == QUEUE)["paused"] is True

    resumed = _cli(settings, "resume", QUEUE)
    assert resumed.returncode == 0 and f"{QUEUE} resumed" in resumed.stdout, resumed.stderr
    with transaction(settings) as conn:
        actions = list(conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.at)).scalars())
    assert actions == ["pause_queue", "resume_queue"]


def test_the_dashboards_buttons_need_a_login_whose_key_may_pause(settings: Settings) -> None:
    from control_api.app import create_app

    def post_as(*scopes: str, tenant: str = "default", queue: str = QUEUE) -> Any:
        with TestClient(create_app(settings, configure_logs=False)) as client:
            client.follow_redirects = False
            dashboard_login(client, make_key(settings, *scopes, name="shift", tenant=tenant))
            token = SESSION_TOKEN.search(client.get("/dashboard/").text)
            csrf = token.group(1) if token else ""
            return client.post(
                f"/dashboard/queues/{queue}/pause", data={"csrf_token": csrf, "reason": "outage"}
            )

    assert post_as("ops", tenant="shop-a").status_code == 403  # a tenant's login
    assert post_as("ops:read", "admin").status_code == 403  # view only
    assert _nothing_paused(settings)
    assert post_as("ops", "admin", queue="default.DQ").status_code == 404
    done = post_as("ops", "admin")
    assert done.status_code == 303 and done.headers["location"].startswith("/dashboard/actions/")
    assert count_rows(settings, queue_pauses) == 1
