"""Scrape throughput through the farm (one browser per worker process), next to a fresh browser
launch per page, in one run.

    python -m bench.scrape_throughput [--pages 200] [--threads 8] [--hosts 20] [--chromium PATH]

Serves N distinct local pages (a title, paragraphs, links and an image) from a threaded HTTP server,
spread over a number of host names pinned to 127.0.0.1 on the allow list, so the default per-host
politeness limit applies as it would to a crawl of many sites. Starts an embedded Postgres and Redis
and a real worker process for the scrape queue (`jobyard worker --queues scrape`), enqueues one
`scrape` job per page through core's enqueue (commit, then publish), and times from the first enqueue
until every job has succeeded. Then, with the worker stopped, the same pages are loaded in this
process with the same code (core.providers.browser), but launching and closing a browser for every
page, as many at once as the worker has threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.worker import worker_process
from core.catalog import load_job_types
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.crypto import generate_data_key
from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from core.platform.tables import jobs
from core.providers.browser import BrowserPool, find_chromium
from core.providers.page import PageRequest
from core.scrape.pages import SCRAPE_QUEUE

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
]


def page_html(n: int) -> bytes:
    paragraphs = "".join(
        f"<p>{' '.join(WORDS[(n + i + j) % len(WORDS)] for j in range(40))}</p>" for i in range(20)
    )
    links = "".join(f'<a href="/page/{(n + k) % 1000}">page {(n + k) % 1000}</a> ' for k in range(1, 30))
    return (
        f"<html><head><title>Page {n}</title></head><body><h1>Page {n}</h1>"
        f'<img src="/img/{n}.png" width=200 height=100>{paragraphs}<nav>{links}</nav></body></html>'
    ).encode()


def serve_pages() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.startswith("/page/"):
                body, kind = page_html(int(self.path.rsplit("/", 1)[1])), "text/html; charset=utf-8"
                status = 200
            else:
                body, kind, status = b"", "text/plain", 404
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except ConnectionError:  # a browser closed with its page
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def page_urls(port: int, pages: int, hosts: int) -> list[str]:
    return [f"http://site{n % hosts}.bench.example:{port}/page/{n}" for n in range(pages)]


def _count(settings: Settings, condition: sa.ColumnElement[bool]) -> int:
    with transaction(settings) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).where(condition)).scalar_one())


def through_farm(settings: Settings, urls: list[str], threads: int, home: Path) -> float:
    env = {"JOBYARD_SCRAPE_ALLOW_HOSTS": ",".join(settings.scrape_allow_hosts)}
    if settings.chromium_path:
        env["JOBYARD_CHROMIUM_PATH"] = settings.chromium_path
    broker = build_broker(settings)
    try:
        with worker_process(settings, SCRAPE_QUEUE, threads, home, **env):
            new_jobs = [NewJob(type="scrape", payload={"url": url}) for url in urls]
            started = time.perf_counter()
            enqueue(new_jobs, broker, settings)
            deadline = time.monotonic() + 1800
            while _count(settings, jobs.c.status.in_(("succeeded", "dead"))) < len(urls):
                if time.monotonic() > deadline:
                    raise SystemExit("timed out waiting for the scrape jobs")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
    finally:
        broker.client.close()
    failed = _count(settings, jobs.c.status != "succeeded")
    if failed:
        raise SystemExit(f"{failed} scrape jobs did not succeed; see {home}")
    return elapsed


def fresh_browser_per_page(settings: Settings, urls: list[str], concurrency: int) -> float:
    def one(url: str) -> None:
        pool = BrowserPool(settings)
        try:
            pool.start()
            page = pool.load(PageRequest(url=url))
            if not page.title.startswith("Page "):
                raise SystemExit(f"unexpected page at {url}: {page.title!r}")
        finally:
            pool.stop()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as executor:
        list(executor.map(one, urls))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument(
        "--threads",
        type=int,
        default=Settings().worker_threads,
        help="worker threads (as `jobyard up` runs them); also the baseline's concurrency",
    )
    parser.add_argument("--hosts", type=int, default=20, help="host names the pages are spread over")
    parser.add_argument("--chromium", help="the browser, both ways (default: found as the workers find it)")
    args = parser.parse_args()

    server = serve_pages()
    port = server.server_address[1]
    urls = page_urls(port, args.pages, args.hosts)
    allow = tuple(f"site{h}.bench.example=127.0.0.1" for h in range(args.hosts))
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    postgres, redis_server = EmbeddedPostgres(home), EmbeddedRedis(home)
    settings = Settings(
        database_url=postgres.start(),
        redis_url=redis_server.start(),
        data_key=generate_data_key(),
        scrape_allow_hosts=allow,
        chromium_path=args.chromium,
    )
    try:
        upgrade(settings)
        load_job_types(settings)
        farm_s = through_farm(settings, urls, args.threads, home)
    finally:
        redis_server.stop()
        postgres.stop()
    fresh_s = fresh_browser_per_page(settings, urls, args.threads)
    server.shutdown()
    farm_rate, fresh_rate = len(urls) / farm_s, len(urls) / fresh_s
    print(
        f"pages: {len(urls)} over {args.hosts} hosts, {args.threads} at a time "
        f"(worker threads; per-host limit {settings.scrape_domain_concurrency}); "
        f"browser: {find_chromium(args.chromium, None)}"
    )
    print(f"through the farm (enqueue -> worker -> Postgres): {farm_rate:6.2f} pages/s ({farm_s:.1f} s)")
    print(f"a fresh browser launched per page:               {fresh_rate:6.2f} pages/s ({fresh_s:.1f} s)")
    print(f"farm / fresh launch: {farm_rate / fresh_rate:.1f}x")


if __name__ == "__main__":
    main()
