"""Scraping end to end with real Chromium in real worker processes, against a local website.

The website listens on 127.0.0.1. The workers reach it as `shop.example.com`, a public-looking name
pinned to it on the allow list (`shop.example.com=127.0.0.1`): nothing else is allowed, so
127.0.0.1, ::1, localhost and the rest are refused by the SSRF guard exactly as in production.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import struct
import uuid
from datetime import datetime
from typing import Any

import psutil
from litestar.testing import TestClient

from core.scrape.pages import SCRAPE_QUEUE
from tests.fakes.site import FakeSite
from tests.integration.conftest import Farm, JobWaiter
from tests.services import Process, wait_for

SITE_HOST = "shop.example.com"
USER_AGENT = "JobyardTest/1.0 (+https://jobyard.invalid)"


def scrape_worker(farm: Farm, processes: int = 1, threads: int = 2, **changes: Any) -> Process:
    farm.settings = farm.settings.replace(
        scrape_allow_hosts=(f"{SITE_HOST}=127.0.0.1",), worker_queues=(SCRAPE_QUEUE,), **changes
    )
    return farm.worker(processes=processes, threads=threads)


def enqueue(api: TestClient[Any], payload: dict[str, Any], **job: Any) -> str:
    response = api.post("/v1/jobs", json={"type": "scrape", "payload": payload, **job})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def attempt_worker(api: TestClient[Any], job_id: str) -> str:
    worker: str = api.get(f"/v1/jobs/{job_id}/attempts").json()["items"][-1]["worker"]
    return worker


def chromium_processes(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    found = []
    for proc in root.children(recursive=True):
        try:
            if proc.name().startswith(("chromium", "chrome")):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rendered_content_redirects_screenshots_politeness_and_errors(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, site: FakeSite
) -> None:
    # Two processes with two threads each, one page of a host at a time across all of them.
    scrape_worker(farm, processes=2, threads=2, scrape_domain_concurrency=1, scrape_user_agent=USER_AGENT)
    farm.scheduler()  # a job that waited too long for its host's slot waits again in Postgres
    base = f"http://{SITE_HOST}:{site.port}"

    slow = [enqueue(api, {"url": f"{base}/slow"}) for _ in range(4)]
    for job_id in slow:
        wait_job(job_id, timeout=60)
    assert site.max_slow_in_flight == 1

    js = enqueue(
        api,
        {
            "url": f"{base}/js",
            "wait_for": ".headline",
            "selectors": {"headline": "h1.headline", "prices": ".price", "missing": ".nope"},
        },
    )
    chain = enqueue(api, {"url": f"{base}/redirect/3"})
    shot = enqueue(api, {"url": f"{base}/shot", "screenshot": True})
    gone = enqueue(api, {"url": f"{base}/status/404"})
    down = enqueue(api, {"url": f"{base}/status/503"}, max_retries=0)
    nowhere = enqueue(api, {"url": "http://no-such-host.invalid/"}, max_retries=0)
    refusing = enqueue(api, {"url": f"http://{SITE_HOST}:{closed_port()}/"}, max_retries=0)

    # Content a script renders 500 ms after the load, and the named selectors' texts.
    result = wait_job(js, timeout=60)["result"]
    assert result["status_code"] == 200
    assert result["final_url"] == f"{base}/js"
    assert result["title"] == "Rendered later"
    assert "Rendered by JavaScript" in result["text"] and "Loading" not in result["text"]
    assert result["fields"] == {
        "headline": ["Rendered by JavaScript"],
        "prices": ["12.50", "9.99"],
        "missing": [],
    }
    assert result["links"] == [f"{base}/next?page=2", "https://example.org/about"]
    assert result["content_sha256"] == hashlib.sha256(result["text"].encode()).hexdigest()
    assert "screenshot_url" not in result and result["blocked_requests"] == []
    stored = api.get(f"/v1/scrapes/{result['scrape_id']}").json()
    assert stored["job_id"] == js and stored["url"] == f"{base}/js"
    assert {k: stored[k] for k in ("text", "fields", "links", "content_sha256")} == {
        k: result[k] for k in ("text", "fields", "links", "content_sha256")
    }
    assert stored["screenshot_url"] is None
    missing_shot = api.get(f"/v1/scrapes/{result['scrape_id']}/screenshot")
    assert missing_shot.status_code == 404 and missing_shot.json()["error"]["code"] == "screenshot_not_found"
    unknown = api.get(f"/v1/scrapes/{uuid.uuid4()}")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "scrape_not_found"

    # A redirect chain (302, 301, 307) is followed to its final URL.
    result = wait_job(chain, timeout=60)["result"]
    assert (result["final_url"], result["title"], result["status_code"]) == (
        f"{base}/landing",
        "Landing",
        200,
    )
    assert "You made it." in result["text"]

    # The screenshot is stored and served by the API.
    result = wait_job(shot, timeout=60)["result"]
    assert result["screenshot_url"] == f"/v1/scrapes/{result['scrape_id']}/screenshot"
    png = api.get(result["screenshot_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png.content[16:24]) == (1280, 800)
    assert api.get(f"/v1/scrapes/{result['scrape_id']}").json()["screenshot_url"] == result["screenshot_url"]

    # Error mapping: 404 is permanent; 5xx, DNS failures and refused connections are retryable.
    expected = {
        gone: ("page_not_found", False),
        down: ("page_server_error", True),
        nowhere: ("dns_failure", True),
        refusing: ("connection_refused", True),
    }
    for job_id, (code, retryable) in expected.items():
        job = wait_job(job_id, "dead", timeout=60)
        assert (job["error"]["code"], job["error"]["retryable"], job["attempts"]) == (code, retryable, 1), job

    # Images are fetched only for the screenshot (the JavaScript page has one too), and every
    # request carried the configured user agent.
    assert site.paths().count("/pixel.png") == 1
    assert {hit.user_agent for hit in site.hits} == {USER_AGENT}


def test_a_page_that_never_loads_times_out_and_the_worker_carries_on(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, site: FakeSite
) -> None:
    # One thread: the next page can only run once the stuck one let go of it.
    worker = scrape_worker(farm, threads=1)
    base = f"http://{SITE_HOST}:{site.port}"
    hang = enqueue(api, {"url": f"{base}/hang", "timeout_s": 2}, max_retries=0)
    loop = enqueue(api, {"url": f"{base}/loop", "timeout_s": 2}, max_retries=0)
    after = enqueue(api, {"url": f"{base}/plain"})
    for job_id in (hang, loop):
        job = wait_job(job_id, "dead", timeout=30)
        assert (job["error"]["code"], job["error"]["retryable"]) == ("scrape_timeout", True), job
        took = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        assert 2 <= took.total_seconds() < 8, took
    assert wait_job(after, timeout=30)["result"]["title"] == "Plain"
    assert attempt_worker(api, hang) == attempt_worker(api, loop) == attempt_worker(api, after)

    # Chromium dies (OOM, a crash): the worker launches another and carries on.
    browsers = chromium_processes(worker.proc.pid)
    assert browsers
    for proc in browsers:
        proc.kill()
    wait_for(lambda: worker.log().count('"browser_launched"') >= 2, timeout=30, what="a relaunched browser")
    again = enqueue(api, {"url": f"{base}/plain"})
    assert wait_job(again, timeout=30)["result"]["title"] == "Plain"
    assert attempt_worker(api, again) == attempt_worker(api, after)
    assert worker.alive()

    # Only processes that consume the scrape queue start a browser: not a worker of other queues,
    # not the API (served in this process).
    farm.settings = farm.settings.replace(worker_queues=("unread_count",))
    other = farm.worker(threads=1)
    assert chromium_processes(other.proc.pid) == []
    assert '"browser_launched"' not in other.log()
    farm_pids = {proc.proc.pid for proc in farm.processes}
    ours = [c.name() for c in psutil.Process().children() if c.pid not in farm_pids]
    assert not [name for name in ours if name.startswith(("chrom", "node"))], ours


def test_the_ssrf_guard_refuses_private_addresses_after_resolution(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, site: FakeSite
) -> None:
    # The full browser here, named by JOBYARD_CHROMIUM_PATH (the other tests find the headless shell).
    worker = scrape_worker(farm, threads=4, chromium_path="chromium")
    # A worker registers before its middleware boots (the browser launches after that): wait for it.
    launched = f'"executable": "{shutil.which("chromium")}"'
    wait_for(lambda: launched in worker.log(), timeout=30, what="the full browser's launch")
    port = site.port
    base = f"http://{SITE_HOST}:{port}"
    refused = {
        "loopback": (f"http://127.0.0.1:{port}/secret", "loopback"),
        "IPv6 loopback": (f"http://[::1]:{port}/secret", "loopback"),
        "cloud metadata": ("http://169.254.169.254/latest/meta-data/", "link-local"),
        "a name for 127.0.0.1": (f"http://localhost:{port}/secret", "loopback"),
        "IPv4-mapped IPv6": (f"http://[::ffff:127.0.0.1]:{port}/secret", "loopback"),
        "a public-looking URL redirecting to 127.0.0.1": (f"{base}/to-loopback", "loopback"),
        "a public-looking URL redirecting to localhost": (f"{base}/to-localhost", "loopback"),
    }
    jobs = {name: enqueue(api, {"url": url}) for name, (url, _) in refused.items()}
    page = enqueue(api, {"url": f"{base}/subresources"})

    for name, job_id in jobs.items():
        job = wait_job(job_id, "dead", timeout=30)
        error = job["error"]
        assert (error["code"], error["retryable"], job["attempts"]) == ("ssrf_blocked", False, 1), name
        assert refused[name][1] in error["message"], (name, error["message"])

    # A page whose script, frame and fetch go to a private address loads without them. (The fetch
    # may still be under way when the page is read, so only the two the load waits for are sure.)
    result = wait_job(page, timeout=30)["result"]
    assert result["title"] == "Public page" and "Public content" in result["text"]
    blocked = set(result["blocked_requests"])
    assert {f"http://127.0.0.1:{port}/internal.js", f"http://127.0.0.1:{port}/internal"} <= blocked
    assert all(url.startswith(f"http://127.0.0.1:{port}/internal") for url in blocked), blocked

    # Nothing private was ever reached; the redirecting pages were (their next hop was refused).
    paths = site.paths()
    assert not {"/secret", "/internal", "/internal.js"} & set(paths), paths
    assert {"/to-loopback", "/to-localhost", "/subresources"} <= set(paths)
