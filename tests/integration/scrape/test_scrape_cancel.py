"""A `scrape` whose page never finishes loading, cancelled while it waits: its page is abandoned in
the browser thread at once (not at its timeout), the job ends cancelled, and the worker's browser
takes the next page."""

from __future__ import annotations

import time
from typing import Any

from litestar.testing import TestClient

from tests.fakes.site import FakeSite
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.scrape.test_scrape import SITE_HOST, attempt_worker, enqueue, scrape_worker
from tests.services import wait_for


def test_a_cancelled_scrape_gives_up_its_page_at_once(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, site: FakeSite
) -> None:
    scrape_worker(farm, threads=1)  # one thread: the next page runs only once the cancelled one let go
    base = f"http://{SITE_HOST}:{site.port}"
    hang = enqueue(api, {"url": f"{base}/hang", "timeout_s": 60}, max_retries=0)
    wait_for(lambda: "/hang" in site.paths(), timeout=30, what="the page to be asked for")
    asked = api.post(f"/v1/jobs/{hang}/cancel")
    assert asked.status_code == 202, asked.text
    asked_at = time.monotonic()
    job = wait_job(hang, "cancelled", "dead", "succeeded", timeout=5)
    assert job["status"] == "cancelled", job
    assert time.monotonic() - asked_at < 5

    after = enqueue(api, {"url": f"{base}/plain"})
    assert wait_job(after, timeout=30)["result"]["title"] == "Plain"
    assert attempt_worker(api, after) == attempt_worker(api, hang)
