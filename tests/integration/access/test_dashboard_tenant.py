"""The dashboard's tenant selector: a session reaching every tenant narrows every page to the tenant it
picks, as a login of that tenant's key would see them, and its bulk actions act within that tenant
only; a session of one tenant has no selector and cannot reach another tenant through it; a value
that is not a tenant's name is refused (the form) or ignored (the cookie), never a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import jobs
from tests.integration.access.test_sessions import tenant_login
from tests.integration.conftest import make_key
from tests.integration.engine.test_dead_letters import insert_dead

CHART = 'aria-label="Succeeded and failed attempts'
SELECTOR = 'action="/dashboard/tenant"'


def _choose(browser: TestClient[Any], csrf: str, tenant: str, next_path: str = "/dashboard") -> Any:
    return browser.post("/dashboard/tenant", data={"csrf_token": csrf, "tenant": tenant, "next": next_path})


def _listed(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def _statuses(settings: Settings) -> dict[tuple[str, str], int]:
    with transaction(settings) as conn:
        rows = conn.execute(
            sa.select(jobs.c.tenant, jobs.c.status, sa.func.count()).group_by(jobs.c.tenant, jobs.c.status)
        ).all()
    return {(tenant, status): n for tenant, status, n in rows}


def _schedule(api: TestClient[Any], settings: Settings, tenant: str) -> str:
    writer = make_key(settings, "jobs:write", name=f"{tenant} writer", tenant=tenant)
    r = api.post(
        "/v1/schedules",
        json={"type": "test_flaky", "payload": {}, "every_seconds": 3600, "start_at": "2030-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {writer}"},
    )
    assert r.status_code == 201, r.text
    schedule_id: str = r.json()["id"]
    return schedule_id


def test_an_admin_session_narrows_every_page_to_the_tenant_it_picks(
    api: TestClient[Any], browser: TestClient[Any], settings: Settings
) -> None:
    a_dead, b_dead = insert_dead(settings, 2, tenant="shop-a"), insert_dead(settings, 1, tenant="shop-b")
    a_schedule, b_schedule = _schedule(api, settings, "shop-a"), _schedule(api, settings, "shop-b")
    csrf = tenant_login(browser, settings, "ops-team", "admin")

    # Every tenant at first: the selector lists the tenants the farm knows, on "all tenants".
    every = browser.get("/dashboard")
    assert SELECTOR in every.text and CHART in every.text
    options = re.findall(r'<option value="([^"]*)"', every.text)
    assert options[0] == "" and {"shop-a", "shop-b", "ops-team"} <= set(options)
    assert '<option value="" selected>all tenants</option>' in every.text
    assert sorted(_listed(browser.get("/dashboard/dead-letters").text)) == sorted(a_dead + b_dead)

    chosen = _choose(browser, csrf, "shop-a", "/dashboard/dead-letters?type=test_flaky")
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/dashboard/dead-letters?type=test_flaky"
    cookie = next(h for h in chosen.headers.get_list("set-cookie") if h.startswith("jobyard_tenant="))
    assert cookie.startswith("jobyard_tenant=shop-a;")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/dashboard" in cookie

    # Each page as shop-a's own login sees it.
    overview = browser.get("/dashboard")
    assert '<option value="shop-a" selected>shop-a</option>' in overview.text
    assert CHART not in overview.text  # the farm-wide chart shows with "all tenants" only
    assert "Tenant <strong>shop-a</strong>: its jobs only" in overview.text
    fragment = browser.get("/dashboard/overview/fragment")
    assert CHART not in fragment.text and 'data-total="dead">2<' in fragment.text
    listed = browser.get("/dashboard/dead-letters")
    assert sorted(_listed(listed.text)) == sorted(a_dead) and 'data-field="matched">2<' in listed.text
    assert '<input type="hidden" name="tenant" value="shop-a">' in listed.text
    assert browser.get(f"/dashboard/jobs/{a_dead[0]}").status_code == 200
    assert browser.get(f"/dashboard/jobs/{b_dead[0]}").status_code == 404
    assert browser.get(f"/dashboard/jobs/{b_dead[0]}/fragment").status_code == 404
    schedules = browser.get("/dashboard/schedules").text
    assert a_schedule in schedules and b_schedule not in schedules
    toggled = browser.post(
        f"/dashboard/schedules/{b_schedule}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    assert toggled.status_code == 404

    # A redrive of every dead letter matching an empty filter: shop-a's only.
    form = {"csrf_token": csrf, "action": "redrive", "target": "matching", "reason": "shop-a's outage over"}
    preview = browser.post("/dashboard/dead-letters/preview", data={**form, "tenant": "shop-a"})
    assert preview.status_code == 200, preview.text
    assert 'data-field="matched">2<' in preview.text
    assert "Within tenant <strong>shop-a</strong> only." in preview.text
    assert '<input type="hidden" name="tenant" value="shop-a">' in preview.text
    done = browser.post("/dashboard/dead-letters/apply", data={**form, "tenant": "shop-a"})
    assert done.status_code == 303, done.text
    entry = browser.get(done.headers["location"])
    assert 'data-field="redriven">2<' in entry.text
    assert 'data-field="tenant">shop-a<' in entry.text
    statuses = _statuses(settings)
    assert statuses.get(("shop-a", "dead"), 0) == 0 and statuses[("shop-b", "dead")] == 1
    assert _listed(browser.get("/dashboard/dead-letters").text) == []
    audit = browser.get("/dashboard/audit").text
    assert re.findall(r'<tr data-audit="([^"]+)"', audit) == [done.headers["location"].rsplit("/", 1)[1]]
    assert 'data-field="tenant">shop-a<' in audit
    (logged,) = api.get("/v1/audit").json()["items"]
    assert logged["tenant"] == "shop-a" and "filter" in logged["selection"]

    # Back to every tenant: shop-b's dead letter, the chart; the cookie is gone.
    back = _choose(browser, csrf, "", "/dashboard/dead-letters")
    assert back.status_code == 303
    cleared = next(h for h in back.headers.get_list("set-cookie") if h.startswith("jobyard_tenant="))
    assert "Max-Age=0" in cleared
    assert _listed(browser.get("/dashboard/dead-letters").text) == b_dead
    assert CHART in browser.get("/dashboard").text


def test_a_form_made_for_another_tenant_than_the_one_shown_now_changes_nothing(
    browser: TestClient[Any], settings: Settings
) -> None:
    """The choice is the browser's: changed in another tab between the dry run and the confirm, the
    action is refused rather than run on other jobs than the dry run showed."""
    insert_dead(settings, 1, tenant="shop-a")
    insert_dead(settings, 1, tenant="shop-b")
    csrf = tenant_login(browser, settings, "ops-team", "admin")
    assert _choose(browser, csrf, "shop-b").status_code == 303
    form = {"csrf_token": csrf, "action": "discard", "target": "matching", "reason": "x", "tenant": "shop-a"}
    for step in ("preview", "apply"):
        refused = browser.post(f"/dashboard/dead-letters/{step}", data=form)
        assert refused.status_code == 409 and "Tenant changed" in refused.text
    form["tenant"] = ""  # made while every tenant showed
    assert browser.post("/dashboard/dead-letters/apply", data=form).status_code == 409
    assert _statuses(settings) == {("shop-a", "dead"): 1, ("shop-b", "dead"): 1}


def test_a_tenants_session_cannot_reach_another_tenant_through_the_selector(
    browser: TestClient[Any], settings: Settings
) -> None:
    theirs, mine = insert_dead(settings, 1, tenant="shop-a"), insert_dead(settings, 1, tenant="shop-b")
    csrf = tenant_login(browser, settings, "shop-b")

    page = browser.get("/dashboard")
    assert SELECTOR not in page.text and "shop-a" not in page.text
    refused = _choose(browser, csrf, "shop-a")
    assert refused.status_code == 404
    assert not any(h.startswith("jobyard_tenant=") for h in refused.headers.get_list("set-cookie"))
    assert _choose(browser, csrf, "").status_code == 303  # its own, every tenant it reaches
    assert _choose(browser, csrf, "shop-b").status_code == 303

    # A cookie naming shop-a, set by hand, is ignored: the session's tenant is its reach.
    session = browser.cookies["jobyard_session"]
    forged = {"Cookie": f"jobyard_session={session}; jobyard_tenant=shop-a"}
    assert _listed(browser.get("/dashboard/dead-letters", headers=forged).text) == mine
    assert browser.get(f"/dashboard/jobs/{theirs[0]}", headers=forged).status_code == 404
    body = {"csrf_token": csrf, "action": "discard", "target": "matching", "reason": "x", "tenant": "shop-a"}
    assert browser.post("/dashboard/dead-letters/preview", data=body, headers=forged).status_code == 409
    body["tenant"] = "shop-b"
    preview = browser.post("/dashboard/dead-letters/preview", data=body, headers=forged)
    assert 'data-field="matched">1<' in preview.text
    assert _statuses(settings) == {("shop-a", "dead"): 1, ("shop-b", "dead"): 1}


@pytest.mark.parametrize(
    "value",
    [
        "Shop-A",
        "shop_a",
        "-shop",
        "shop-",
        "a" * 64,
        "a" * 10_000,
        "shop a",
        "shop-a\n",
        "shop-a\x00",
        "../shop-a",
        "%73hop-a",
        "shöp",
        "shop-a;jobyard_session=x",
    ],
)
def test_a_value_that_is_not_a_tenant_is_refused_never_a_500(
    browser: TestClient[Any], settings: Settings, value: str
) -> None:
    csrf = tenant_login(browser, settings, "ops-team", "admin")
    refused = _choose(browser, csrf, value)
    assert refused.status_code == 400, refused.text
    assert "is not a tenant&#39;s name" in refused.text
    assert not any(h.startswith("jobyard_tenant=") for h in refused.headers.get_list("set-cookie"))


@pytest.mark.parametrize("value", ["SHOP-A", "a" * 200, "%2e%2e", "shop_a", "-"])
def test_a_cookie_that_is_not_a_tenant_is_ignored(
    browser: TestClient[Any], settings: Settings, value: str
) -> None:
    a_dead, b_dead = insert_dead(settings, 1, tenant="shop-a"), insert_dead(settings, 1, tenant="shop-b")
    tenant_login(browser, settings, "ops-team", "admin")
    session = browser.cookies["jobyard_session"]
    headers = {"Cookie": f"jobyard_session={session}; jobyard_tenant={value}"}
    page = browser.get("/dashboard/dead-letters", headers=headers)
    assert page.status_code == 200
    assert sorted(_listed(page.text)) == sorted(a_dead + b_dead)  # every tenant, as with no choice
    assert '<option value="" selected>all tenants</option>' in page.text


def test_a_tenants_session_lists_and_acts_on_its_own_jobs_only(
    browser: TestClient[Any], settings: Settings
) -> None:
    """The jobs page and its actions, for a session of shop-b, naming shop-a's jobs every way they can."""
    theirs, mine = insert_dead(settings, 2, tenant="shop-a"), insert_dead(settings, 1, tenant="shop-b")
    csrf = tenant_login(browser, settings, "shop-b")
    assert _listed(browser.get("/dashboard/jobs").text) == mine
    assert _listed(browser.get("/dashboard/jobs", params={"id": theirs[0]}).text) == []
    for bad, said in (
        ({"status": "nope"}, "is not one of"),
        ({"id": "not-an-id"}, "is not a job id"),
        ({"created_after": "yesterday"}, "not a time"),
        ({"cursor": "garbage"}, "not valid any more"),
        ({"q": "x" * 5000}, "Too long"),
    ):
        page = browser.get("/dashboard/jobs", params=bad)
        assert page.status_code == 200 and said in page.text, (bad, page.status_code)  # said, never a 500
    for action in ("cancel", "retry", "reschedule"):
        form = {"csrf_token": csrf, "action": action, "run_at": "2030-01-01T00:00"}
        assert browser.post(f"/dashboard/jobs/{theirs[0]}/act", data=form).status_code == 404
    # Its own job: a time out of range is refused, saying the limit; a dead job is not rescheduled.
    for when, status, said in (
        ("0001-01-01T00:00", 422, "ten years"),
        ("2030-01-01T00:00", 409, "scheduled"),
    ):
        form = {"csrf_token": csrf, "action": "reschedule", "run_at": when}
        answer = browser.post(f"/dashboard/jobs/{mine[0]}/act", data=form)
        assert (answer.status_code, said in answer.text) == (status, True), answer.text[-600:]
    # By ids and by a filter: a dry run and an apply see none of shop-a's jobs.
    body = {"csrf_token": csrf, "action": "cancel", "target": "selected", "ids": theirs, "reason": "x"}
    body["tenant"] = "shop-b"
    assert 'data-field="matched">0<' in browser.post("/dashboard/jobs/preview", data=body).text
    assert browser.post("/dashboard/jobs/apply", data=body).status_code == 303
    body |= {"target": "matching", "status": "dead", "ids": []}
    assert 'data-field="matched">0<' in browser.post("/dashboard/jobs/preview", data=body).text
    body["tenant"] = "shop-a"  # a form claiming another tenant is refused before anything
    assert browser.post("/dashboard/jobs/preview", data=body).status_code == 409
    assert _statuses(settings) == {("shop-a", "dead"): 2, ("shop-b", "dead"): 1}
