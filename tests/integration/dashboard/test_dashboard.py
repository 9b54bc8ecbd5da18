"""The dashboard in real Chromium (Playwright), against a real farm: log in with an ops key, see the
counts Postgres and Redis hold, open a dead job, redrive it with a reason and watch it succeed; with
every request that is not to Jobyard blocked, and none failing. Screenshots of the overview and the
dead letters go to the test's directory and tests/artifacts/."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, Route, expect

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, jobs, schedules
from tests.integration.conftest import Farm, make_key, waiting

# Re-exported: the other browser tests import them from here (the browser fixture is the conftest's).
from tests.integration.dashboard.conftest import CHROMIUM as CHROMIUM
from tests.integration.dashboard.conftest import CHROMIUM_ARGS as CHROMIUM_ARGS
from tests.services import ROOT, wait_for

ARTIFACTS = ROOT / "tests" / "artifacts"


def _count(settings: Settings, type_: str, status: str) -> int:
    with transaction(settings) as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(jobs)
                .where(jobs.c.type == type_, jobs.c.status == status)
            ).scalar_one()
        )


def _screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)


def _loaded_from_jobyard_alone(
    page: Page, outside: list[str], failed: list[str], bad_status: list[str]
) -> None:
    """The page and everything it loads (style, script, icon, refreshes) came from Jobyard, and no
    request failed, while anything else would have been blocked."""
    page.wait_for_load_state("networkidle")
    assert outside == [], "the page asked for something outside Jobyard"
    assert failed == []
    assert bad_status == []


def _set_up_jobs(base: str, settings: Settings) -> str:
    """3 dead, 5 succeeded and 2 scheduled test_flaky jobs, 2 test_crash jobs no worker takes, and a
    daily schedule; returns the schedule's id."""
    writer = make_key(settings, "jobs:write")
    auth = {"Authorization": f"Bearer {writer}"}
    r = httpx.post(
        f"{base}/v1/schedules",
        json={
            "type": "test_flaky",
            "payload": {},
            "cron": "0 8 * * *",
            "timezone": "Europe/London",
            "start_at": (
                datetime.now(UTC) + timedelta(days=3000)
            ).isoformat(),  # it must not fire during the test
        },
        headers=auth,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    dies_once = {"type": "test_flaky", "payload": {"fail_times": 1, "error": "permanent"}}
    batch = [dies_once] * 3 + [{"type": "test_flaky", "payload": {}}] * 5
    batch += [{"type": "test_flaky", "payload": {}, "delay_seconds": 3600}] * 2
    batch += [{"type": "test_crash", "payload": {}}] * 2
    jobs_r = httpx.post(f"{base}/v1/jobs/batch", json={"jobs": batch}, headers=auth, timeout=10)
    assert jobs_r.status_code == 201, jobs_r.text
    wait_for(
        lambda: (
            _count(settings, "test_flaky", "dead") == 3 and _count(settings, "test_flaky", "succeeded") == 5
        ),
        timeout=20,
        what="3 dead and 5 succeeded jobs",
    )
    return str(r.json()["id"])


def test_ops_redrive_a_dead_job_from_the_dashboard(
    browser: Browser, farm: Farm, settings: Settings, tmp_path: Path
) -> None:
    # Only test_flaky is consumed, so the test_crash jobs stay ready in Redis; pages refresh every second.
    farm.settings = settings.replace(worker_queues=("test_flaky",), dashboard_refresh_s=1.0)
    farm.worker()
    farm.scheduler()
    _, base = farm.api()
    schedule_id = _set_up_jobs(base, settings)
    # A key reaching every tenant: the throughput chart and Redis's depths count every tenant's jobs.
    key = make_key(settings, "ops", "admin", name="night-shift")

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    outside: list[str] = []
    failed: list[str] = []
    bad_status: list[str] = []

    def only_jobyard(route: Route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort("blockedbyclient")

    # The network is Jobyard only: anything else the page asked for would be aborted, and recorded.
    context.route("**/*", only_jobyard)
    page = context.new_page()
    # A fetch still in flight when the page navigates away is cancelled by the browser (ERR_ABORTED):
    # not a failure. Anything refused, blocked (ERR_BLOCKED_BY_CLIENT) or unreachable is.
    page.on(
        "requestfailed",
        lambda r: None if r.failure == "net::ERR_ABORTED" else failed.append(f"{r.url} {r.failure}"),
    )
    page.on("response", lambda r: bad_status.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    # No session: the dashboard sends you to the login form.
    page.goto(f"{base}/dashboard")
    assert page.url == f"{base}/dashboard/login?next=%2Fdashboard"
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/dashboard")
    expect(page.locator("html")).to_have_attribute("data-js", "ready")  # the script file ran
    # The stylesheet applied (the page background is the dashboard's, not the browser's white).
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(245, 246, 248)"
    assert page.locator("svg.chart rect.ok").count() == 60

    # The counts are the database's (and Redis's, for what is ready).
    flaky = page.locator('tr[data-type="test_flaky"]')
    for field in ("dead", "scheduled", "running", "retrying"):
        assert flaky.locator(f'[data-field="{field}"]').inner_text() == str(
            _count(settings, "test_flaky", field)
        )
    assert flaky.locator('[data-field="dead"]').inner_text() == "3"
    assert flaky.locator('[data-field="scheduled"]').inner_text() == "2"
    crash_ready = page.locator('tr[data-type="test_crash"] [data-field="ready"]').inner_text()
    assert crash_ready == str(waiting(farm.redis, settings, "test_crash")) == "2"
    assert page.locator('[data-total="workers"]').inner_text() == "1"
    _loaded_from_jobyard_alone(page, outside, failed, bad_status)
    _screenshot(page, tmp_path, "dashboard-overview.png")

    page.click("nav >> text=Dead letters")
    expect(page.locator('[data-field="matched"]')).to_have_text("3")
    _loaded_from_jobyard_alone(page, outside, failed, bad_status)
    _screenshot(page, tmp_path, "dashboard-dead-letters.png")

    # Open a dead job, redrive it with a reason, and watch it succeed.
    page.locator("tr[data-job] a").first.click()
    expect(page.locator('[data-field="status"]')).to_have_text("dead")
    job_url = page.url
    job_id = job_url.rsplit("/", 1)[1]
    page.fill('input[name="reason"]', "the failure was injected by the test")
    page.fill('textarea[name="payload_patch"]', '{"error": "retryable"}')
    page.click("button[value=redrive]")
    # The dry run: one job, and the patch's diff before anything changes.
    expect(page.locator('[data-field="matched"]')).to_have_text("1")
    expect(page.locator("pre.diff .del")).to_have_text(['-  "error": "permanent",'])
    expect(page.locator("pre.diff .add")).to_have_text(['+  "error": "retryable",'])
    assert _count(settings, "test_flaky", "dead") == 3
    _screenshot(page, tmp_path, "dashboard-redrive-preview.png")
    page.click("form.confirm button[type=submit]")
    expect(page.locator('[data-field="redriven"]')).to_have_text("1")
    page.click(f'a[href="/dashboard/jobs/{job_id}"]')
    # The job page refreshes itself until the job is finished.
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded", timeout=20_000)
    assert page.locator("li.attempt").count() == 2
    _screenshot(page, tmp_path, "dashboard-job.png")
    with transaction(settings) as conn:
        entry = conn.execute(sa.select(audit_log)).one()
        payload = conn.execute(sa.select(jobs.c.payload).where(jobs.c.id == job_id)).scalar_one()
    assert (entry.actor, entry.action, entry.reason) == (
        "night-shift",
        "redrive",
        "the failure was injected by the test",
    )
    assert entry.selection == {"ids": [job_id]}
    assert entry.payload_patch == {"error": "retryable"}
    assert payload == {"fail_times": 1, "error": "retryable"}
    page.click("nav >> text=Audit log")
    expect(page.locator("tr[data-audit]")).to_have_count(1)
    _screenshot(page, tmp_path, "dashboard-audit.png")

    # The header's tenant selector (the key holds admin): choosing is enough, the script submits it.
    # The redrive above reached every tenant, so its entry is no one tenant's: default sees none.
    tenant = page.locator("header select[name=tenant]")
    with page.expect_navigation():
        tenant.select_option("default")
    expect(tenant).to_have_value("default")
    expect(page.locator("tr[data-audit]")).to_have_count(0)
    with page.expect_navigation():
        tenant.select_option("")
    expect(tenant).to_have_value("")
    expect(page.locator("tr[data-audit]")).to_have_count(1)

    # Schedules: disable one.
    page.click("nav >> text=Schedules")
    schedule = page.locator(f'tr[data-schedule="{schedule_id}"]')
    expect(schedule.locator('[data-field="enabled"]')).to_have_text("on")
    schedule.locator("button").click()
    expect(schedule.locator('[data-field="enabled"]')).to_have_text("off")
    _screenshot(page, tmp_path, "dashboard-schedules.png")
    with transaction(settings) as conn:
        assert (
            conn.execute(sa.select(schedules.c.enabled).where(schedules.c.id == schedule_id)).scalar_one()
            is False
        )

    # The overview refreshes itself: two dead letters left, without reloading the page.
    page.goto(f"{base}/dashboard")
    expect(page.locator('tr[data-type="test_flaky"] [data-field="dead"]')).to_have_text("2")
    redis_depth_before = waiting(farm.redis, settings, "test_flaky")

    # A POST without the session's CSRF token is refused, and changes nothing.
    forged = context.request.post(
        f"{base}/dashboard/dead-letters/apply",
        form={"action": "discard", "target": "matching", "reason": "forged"},
    )
    assert forged.status == 403
    assert _count(settings, "test_flaky", "dead") == 2
    assert waiting(farm.redis, settings, "test_flaky") == redis_depth_before

    page.click("text=Log out")
    page.wait_for_url(f"{base}/dashboard/login")
    page.goto(f"{base}/dashboard/dead-letters")
    assert page.url.startswith(f"{base}/dashboard/login?next=")

    assert outside == [], "the dashboard asked for something outside Jobyard"
    assert failed == []
    assert bad_status == []
    context.close()
