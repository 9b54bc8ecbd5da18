"""Scrapes per tenant, with real Chromium against the local website: a scrape job stores its
tenant's scrape, and another tenant's key finds neither it nor its screenshot (404, as for an id no
scrape ever had), while an admin key reads every tenant's."""

from __future__ import annotations

import json
from typing import Any

from litestar.testing import TestClient

from core.platform.settings import Settings
from tests.fakes.site import FakeSite
from tests.integration.access.test_tenant_jobs import Caller
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.scrape.test_scrape import SITE_HOST, scrape_worker

GHOST = "00000000-0000-4000-8000-000000000000"


def _scrape(caller: Caller, wait_job: JobWaiter, url: str, **payload: Any) -> str:
    created = caller.request("POST", "/v1/jobs", json={"type": "scrape", "payload": {"url": url, **payload}})
    assert created.status_code == 201, created.text
    job = wait_job(created.json()["id"], timeout=60)
    scrape_id: str = job["result"]["scrape_id"]
    return scrape_id


def _as_for_a_ghost(caller: Caller, path: str, scrape_id: str, code: str) -> None:
    answer = caller.request("GET", path)
    ghost = caller.request("GET", path.replace(scrape_id, GHOST))
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, code), answer.text
    assert answer.json() == json.loads(ghost.text.replace(GHOST, scrape_id))


def test_a_scrape_and_its_screenshot_are_their_tenants(
    api: TestClient[Any], farm: Farm, settings: Settings, wait_job: JobWaiter, site: FakeSite
) -> None:
    scrape_worker(farm)
    a, b = Caller(api, settings, "shop-a"), Caller(api, settings, "shop-b")
    base = f"http://{SITE_HOST}:{site.port}"
    mine = _scrape(a, wait_job, f"{base}/shot", screenshot=True)
    theirs = _scrape(b, wait_job, f"{base}/plain")

    read = a.request("GET", f"/v1/scrapes/{mine}").json()
    assert (read["title"], read["tenant"]) == ("Picture", "shop-a")
    shot = a.request("GET", read["screenshot_url"])
    assert (shot.status_code, shot.headers["content-type"], shot.content[:4]) == (
        200,
        "image/png",
        b"\x89PNG",
    )
    assert b.request("GET", f"/v1/scrapes/{theirs}").json()["tenant"] == "shop-b"

    # Each tenant's key finds nothing of the other's: not the scrape, not its screenshot.
    _as_for_a_ghost(b, f"/v1/scrapes/{mine}", mine, "scrape_not_found")
    _as_for_a_ghost(b, f"/v1/scrapes/{mine}/screenshot", mine, "screenshot_not_found")
    _as_for_a_ghost(a, f"/v1/scrapes/{theirs}", theirs, "scrape_not_found")
    _as_for_a_ghost(a, f"/v1/scrapes/{theirs}/screenshot", theirs, "screenshot_not_found")

    # The admin key reads both.
    assert {api.get(f"/v1/scrapes/{i}").json()["tenant"] for i in (mine, theirs)} == {"shop-a", "shop-b"}
    assert api.get(f"/v1/scrapes/{mine}/screenshot").content == shot.content
