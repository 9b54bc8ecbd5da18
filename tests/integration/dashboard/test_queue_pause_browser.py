"""Pausing a queue from the dashboard in real Chromium, against a real farm: pause test_echo with a
reason, see new jobs wait (queued, the overview says paused) while another queue's job runs, resume,
see them run; the audit log shows both. A view-only login sees the paused state and no button."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from core.platform.settings import Settings
from tests.integration.conftest import Farm, make_key
from tests.integration.dashboard.login import new_logged_in_page
from tests.services import wait_for

QUEUE = "test_echo"


def _enqueue(base: str, auth: dict[str, str], job: dict[str, object]) -> str:
    r = httpx.post(f"{base}/v1/jobs", json=job, headers=auth, timeout=10)
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def _status(base: str, auth: dict[str, str], job_id: str) -> str:
    return str(httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth, timeout=10).json()["status"])


def test_pause_a_queue_from_the_dashboard_see_jobs_wait_then_resume_and_see_them_run(
    browser: Browser,
    farm: Farm,
    settings: Settings,
    tmp_path: Path,
) -> None:
    farm.settings = settings.replace(worker_queues=(QUEUE, "unread_count"), dashboard_refresh_s=1.0)
    farm.worker(threads=2)
    _, base = farm.api()
    auth = {"Authorization": f"Bearer {make_key(settings, 'jobs:write', 'jobs:read')}"}
    page = new_logged_in_page(browser, base, make_key(settings, "ops", "admin", name="night-shift"))

    row = page.locator(f'tr[data-type="{QUEUE}"]')
    expect(row.locator('[data-field="paused"] .status.paused')).to_have_count(0)
    row.locator('input[name="reason"]').fill("LLM provider outage")
    row.locator("button[name=pause]").click()
    # Lands on the audit entry of the pause.
    expect(page.locator("h1")).to_have_text("Pause queue done")
    expect(page.locator("dd", has_text="LLM provider outage")).to_have_count(1)

    waiting = [_enqueue(base, auth, {"type": QUEUE, "payload": {"value": i}}) for i in range(3)]
    other = _enqueue(
        base, auth, {"type": "unread_count", "payload": {"chat_id": uuid.uuid4().hex, "user_id": "u"}}
    )
    # The worker is alive and fetching: the other queue's job ran; the paused queue's wait.
    wait_for(lambda: _status(base, auth, other) == "succeeded", timeout=15, what="the other queue's job")
    page.goto(f"{base}/dashboard")
    expect(row.locator('[data-field="paused"] .status.paused')).to_have_text("paused")
    expect(row.locator('[data-field="ready"]')).to_have_text("3")
    page.goto(f"{base}/dashboard/jobs/{waiting[0]}")
    expect(page.locator('[data-field="status"]')).to_have_text("queued")
    assert [_status(base, auth, j) for j in waiting] == ["queued"] * 3
    page.screenshot(path=str(tmp_path / "dashboard-queue-paused.png"), full_page=True)

    page.goto(f"{base}/dashboard")
    row.locator("button[name=resume]").click()
    expect(page.locator("h1")).to_have_text("Resume queue done")
    page.goto(f"{base}/dashboard/jobs/{waiting[-1]}")
    # The job page refreshes itself until the job is finished.
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded", timeout=15_000)
    wait_for(
        lambda: all(_status(base, auth, j) == "succeeded" for j in waiting), timeout=15, what="all three"
    )

    page.goto(f"{base}/dashboard/audit")
    rows = page.locator("tr[data-audit]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("resume_queue")
    expect(rows.nth(1)).to_contain_text("pause_queue")
    expect(rows.nth(1)).to_contain_text("LLM provider outage")
    expect(rows.nth(1)).to_contain_text("night-shift")

    # A view-only login sees the state and no button; its POST is refused.
    httpx.post(
        f"{base}/v1/queues/{QUEUE}/pause",
        json={"reason": "again"},
        headers={"Authorization": f"Bearer {make_key(settings, 'ops', 'admin')}"},
        timeout=10,
    ).raise_for_status()
    viewer = new_logged_in_page(browser, base, make_key(settings, "ops:read", "admin", name="viewer"))
    seen = viewer.locator(f'tr[data-type="{QUEUE}"]')
    expect(seen.locator('[data-field="paused"] .status.paused')).to_have_text("paused")
    expect(viewer.locator("button[name=pause], button[name=resume]")).to_have_count(0)
