"""The ops console in real Chromium (Playwright), against a real farm (a worker, the scheduler, the API in
processes of their own): find a job by its business key and cancel it from its page; bulk-retry every
`retrying` job of a type with a reason (filter, all matching, dry run, apply) and see them run again and
the audit log show it; and a view-only (`ops:read`) login that sees the same pages with no action and
whose POSTs are refused."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from playwright.sync_api import Browser, expect

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, jobs
from tests.integration.conftest import Farm, make_key
from tests.integration.dashboard.login import new_logged_in_page
from tests.services import wait_for

BUSINESS_KEY = "order-console-77"
REASON = "provider back up, run them now"
RETRYING = 4


def _statuses(settings: Settings, type_: str) -> list[str]:
    with transaction(settings) as conn:
        return sorted(conn.execute(sa.select(jobs.c.status).where(jobs.c.type == type_)).scalars())


def _set_up(base: str, settings: Settings) -> str:
    """A scheduled test_flaky job with a business key (its id returned), and RETRYING test_backoff jobs
    that failed once and wait an hour for their next attempt."""
    auth = {"Authorization": f"Bearer {make_key(settings, 'jobs:write')}"}
    batch: list[dict[str, Any]] = [
        {"type": "test_flaky", "payload": {}, "delay_seconds": 3600, "business_key": BUSINESS_KEY},
        {"type": "test_flaky", "payload": {}, "delay_seconds": 3600, "business_key": "order-console-78"},
    ]
    batch += [{"type": "test_backoff", "payload": {"fail_times": 1}}] * RETRYING
    r = httpx.post(f"{base}/v1/jobs/batch", json={"jobs": batch}, headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    wait_for(
        lambda: _statuses(settings, "test_backoff") == ["retrying"] * RETRYING,
        timeout=20,
        what="the test_backoff jobs retrying",
    )
    return str(r.json()["items"][0]["id"])


def test_find_cancel_and_bulk_retry_jobs_and_a_view_only_login(
    browser: Browser, farm: Farm, settings: Settings
) -> None:
    farm.settings = settings.replace(worker_queues=("test_flaky", "test_backoff"), dashboard_refresh_s=1.0)
    farm.worker()
    farm.scheduler()
    _, base = farm.api()
    job_id = _set_up(base, settings)
    page = new_logged_in_page(browser, base, make_key(settings, "ops", name="night-shift"), "/dashboard/jobs")

    # Find the job by its business key, open it, cancel it.
    page.fill('input[name="business_key"]', BUSINESS_KEY)
    page.click("form.filters button[type=submit]")
    expect(page.locator('[data-field="matched"]')).to_have_text("1")
    expect(page.locator("tr[data-job]")).to_have_count(1)
    page.click(f'tr[data-job="{job_id}"] a')
    expect(page.locator('[data-field="status"]')).to_have_text("scheduled")
    page.click("#job-actions button[value=cancel]")
    page.wait_for_url(f"{base}/dashboard/jobs/{job_id}")
    expect(page.locator('[data-field="status"]')).to_have_text("cancelled")
    expect(page.locator("#job-actions")).to_have_count(0)
    assert _statuses(settings, "test_flaky") == ["cancelled", "scheduled"]  # the other key's job is left

    # Every retrying test_backoff job: filter, all matching, a dry run, then apply with a reason.
    page.goto(f"{base}/dashboard/jobs")
    page.select_option('select[name="type"]', "test_backoff")
    page.select_option('select[name="status"]', "retrying")
    page.click("form.filters button[type=submit]")
    expect(page.locator('[data-field="matched"]')).to_have_text(str(RETRYING))
    page.check('input[name="target"][value="matching"]')
    page.fill('input[name="reason"]', REASON)
    page.click("button[value=retry]")
    expect(page.locator('[data-field="matched"]')).to_have_text(str(RETRYING))
    assert _statuses(settings, "test_backoff") == ["retrying"] * RETRYING  # a dry run changes nothing
    page.click("form.confirm button[type=submit]")
    expect(page.locator('[data-field="retried"]')).to_have_text(str(RETRYING))
    # Due at once: the scheduler publishes them and the worker's second attempt succeeds.
    wait_for(
        lambda: _statuses(settings, "test_backoff") == ["succeeded"] * RETRYING,
        timeout=20,
        what="the retried jobs succeeded",
    )
    page.click("nav >> text=Audit log")
    entry = page.locator("tr[data-audit]")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("jobs.retry")
    expect(entry).to_contain_text(REASON)
    with transaction(settings) as conn:
        row = conn.execute(sa.select(audit_log)).one()
    assert (row.actor, row.action, row.counts) == ("night-shift", "jobs.retry", {"matched": 4, "retried": 4})
    assert row.selection == {"filter": {"type": "test_backoff", "status": "retrying"}}

    # A view-only login: the same pages, no action, and its POSTs refused.
    viewer = new_logged_in_page(
        browser, base, make_key(settings, "ops:read", name="viewer"), "/dashboard/jobs"
    )
    expect(viewer.locator("tr[data-job]")).to_have_count(2 + RETRYING)
    expect(viewer.locator('[data-field="view-only"]')).to_have_text("view only")
    assert viewer.locator("#jobs button, #jobs input[type=checkbox]").count() == 0
    viewer.fill('input[name="business_key"]', "order-console-78")
    viewer.click("form.filters button[type=submit]")
    viewer.locator("tr[data-job] a").first.click()
    expect(viewer.locator('[data-field="status"]')).to_have_text("scheduled")
    expect(viewer.locator("#job-actions")).to_have_count(0)
    scheduled_id = viewer.url.rsplit("/", 1)[1]
    token = viewer.locator('form.whoami input[name="csrf_token"]').get_attribute("value")
    assert token
    for path, form in (
        (f"/dashboard/jobs/{scheduled_id}/act", {"action": "cancel"}),
        ("/dashboard/jobs/apply", {"action": "cancel", "target": "matching", "reason": "view only tries"}),
    ):
        refused = viewer.context.request.post(f"{base}{path}", form={"csrf_token": token, **form})
        assert refused.status == 403, (path, refused.status)
        assert "View only" in refused.text()
    assert _statuses(settings, "test_flaky") == ["cancelled", "scheduled"]
