"""The dashboard live, in real Chromium against a real farm: pages update from the events stream
(/dashboard/events) with polling slowed to ten minutes, so only an event can explain an update, and
without a navigation (a marker set on the page's window survives). Then the workers page: a worker,
its running job, and quieting it from the page."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect

from core.platform.db import transaction
from core.platform.settings import Settings
from core.platform.tables import audit_log, workers
from tests.integration.conftest import Farm, make_key
from tests.integration.dashboard.login import log_in

#: Polling so slow that nothing in this test can come from it.
SLOW_POLL_S = 600.0


def _enqueue(base: str, writer: str, seconds: float) -> str:
    r = httpx.post(
        f"{base}/v1/jobs",
        json={"type": "test_sleep", "payload": {"seconds": seconds}},
        headers={"Authorization": f"Bearer {writer}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _mark(page: Page) -> None:
    """A value on the page's window: any navigation or reload would lose it."""
    page.evaluate("window.__jobyardMarker = 'still here'")


def _not_navigated(page: Page) -> bool:
    marker: Any = page.evaluate("window.__jobyardMarker")
    return marker == "still here"


def test_pages_update_from_the_events_stream_without_reloading(
    browser: Browser, farm: Farm, settings: Settings
) -> None:
    farm.settings = settings.replace(worker_queues=("test_sleep",), dashboard_refresh_s=SLOW_POLL_S)
    farm.worker(threads=2)
    _, base = farm.api()
    writer = make_key(settings, "jobs:write", name="backend")
    key = make_key(settings, "ops", "admin", name="night-shift")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, key)

    # The overview: a job finishes, and its row counts it, on the page as it was loaded.
    expect(page.locator("html")).to_have_attribute("data-live", "on")
    _mark(page)
    row = page.locator('tr[data-type="test_sleep"]')
    expect(row.locator('[data-field="succeeded_1m"]')).to_have_text("0")
    _enqueue(base, writer, 0.5)
    expect(row.locator('[data-field="succeeded_1m"]')).to_have_text("1", timeout=20_000)
    assert _not_navigated(page)

    # A job's page: it was running when the page opened; it shows succeeded with its attempt, and
    # its final content (no more refreshing), without a reload.
    job_id = _enqueue(base, writer, 3)
    page.goto(f"{base}/dashboard/jobs/{job_id}")
    expect(page.locator("html")).to_have_attribute("data-live", "on")
    _mark(page)
    expect(page.locator('[data-field="status"]')).not_to_have_text("succeeded")
    expect(page.locator('[data-field="status"]')).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("li.attempt")).to_have_count(1)
    expect(page.locator("#job[data-refresh-url]")).to_have_count(0)  # the final page swapped in
    assert _not_navigated(page)
    context.close()


def test_the_workers_page_shows_each_worker_and_quiets_one(
    browser: Browser, farm: Farm, settings: Settings
) -> None:
    farm.settings = settings.replace(worker_queues=("test_sleep",), dashboard_refresh_s=1.0)
    farm.worker(threads=3)
    _, base = farm.api()
    writer = make_key(settings, "jobs:write", name="backend")
    job_id = _enqueue(base, writer, 30)
    key = make_key(settings, "ops", "admin", name="night-shift")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, base, key)
    page.click("nav >> text=Workers")
    card = page.locator("section.worker")
    expect(card).to_have_count(1)
    expect(card.locator('[data-field="threads"]')).to_have_text("3")
    expect(card.locator('[data-field="state"]')).to_have_text("running")
    # The running job shows on its worker (the page polls every second).
    expect(card.locator(f'tr[data-job="{job_id}"]')).to_have_count(1, timeout=20_000)

    card.locator('input[name="reason"]').fill("draining before a deploy")
    card.locator("form.quiet button").click()
    expect(card.locator('[data-field="state"]')).to_have_text("quiet", timeout=20_000)
    expect(card.locator("form.quiet")).to_have_count(0)
    expect(card.locator(f'tr[data-job="{job_id}"]')).to_have_count(1)  # it finishes what it holds
    with transaction(settings) as conn:
        entry = conn.execute(sa.select(audit_log)).one()
        quiet_at = conn.execute(sa.select(workers.c.quiet_at)).scalar_one()
    assert (entry.actor, entry.action, entry.reason) == (
        "night-shift",
        "worker_quiet",
        "draining before a deploy",
    )
    assert quiet_at is not None

    # A view-only login sees the page, and no quiet button.
    viewer = make_key(settings, "ops:read", "admin", name="viewer")
    other = browser.new_context()
    view = other.new_page()
    log_in(view, base, viewer)
    view.goto(f"{base}/dashboard/workers")
    expect(view.locator("section.worker")).to_have_count(1)
    expect(view.locator("form.quiet")).to_have_count(0)
    other.close()
    context.close()
