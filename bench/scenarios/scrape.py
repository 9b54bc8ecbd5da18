"""Scraping: the farm's `scrape` jobs beside a bare Playwright loop, the same pages, in one run.

The farm: one `jobyard worker --queues scrape` process (one browser, launched at its boot, a fresh
context per page, the SSRF guard proxy, the per-host slots in Redis, each page's scrape and result
committed in Postgres). The peer (bench/peers/playwright_loop.py): one process, one browser of the
same binary with the same flags, a fresh context per page, as many pages at a time as the worker
has threads, nothing else. Both load the same N local pages (bench/testpages.py, served by the
harness) under 20 host names.

Both are started and warmed up first (a few pages each, not measured); then, in rounds taking
turns, each loads all N pages. Measured for each: the CPU time of its whole process tree (the
worker and its children: Playwright's driver, Chromium and every renderer; the peer's process and
the same), from the enqueue (the peer's start) until every job has finished (the peer's last
page), and the pages a second over that time. The farm's Postgres and Redis CPU is reported beside
it (not in the ratio: the peer has neither). CPU per page is the figure the machine's other load
disturbs least.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import sqlalchemy as sa

from bench.cputree import tree_cpu, tree_cpu_by_kind
from bench.harness import JOBYARD, Bench, Proc, wait_until
from bench.peers.stepped import SteppedPeer
from bench.testpages import host, page_urls, serve_pages
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.platform.db import transaction
from core.scrape.pages import SCRAPE_QUEUE

HOSTS = 20
POLL_S = 0.02


def start_peer(bench: Bench, urls: list[str], concurrency: int, chromium: str | None) -> SteppedPeer:
    path = bench.workdir / "scrape-urls.txt"
    path.write_text("\n".join(urls))
    argv = [sys.executable, "-m", "bench.peers.playwright_loop", "--urls", str(path)]
    argv += ["--concurrency", str(concurrency)] + (["--chromium", chromium] if chromium else [])
    return SteppedPeer(bench, "playwright", argv)


def peer_round(peer: SteppedPeer, count: int) -> dict[str, Any]:
    step = peer.step(count)
    if step.answer["bad"] or step.answer["pages"] != count:
        raise RuntimeError(f"the Playwright loop read {step.answer}, not {count} test pages")
    return {"pages": count, "seconds": step.seconds, "cpu_s": step.cpu.total(), "by_kind": step.cpu}


def start_worker(bench: Bench, threads: int, chromium: str | None) -> Proc:
    """One `jobyard worker` process for the scrape queue, once registered (its browser launched)."""
    env = {"JOBYARD_SCRAPE_ALLOW_HOSTS": ",".join(f"{host(h)}=127.0.0.1" for h in range(HOSTS))}
    if chromium:
        env["JOBYARD_CHROMIUM_PATH"] = chromium
    argv = [JOBYARD, "worker", "--processes", "1", "--threads", str(threads), "--queues", SCRAPE_QUEUE]
    proc = bench.spawn("worker-scrape", argv, bench.env(**env))

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the scrape worker exited:\n{proc.log()[-3000:]}")
        return bool(bench.scalar("SELECT count(*) FROM workers") >= 1)

    wait_until(registered, 120, "the scrape worker's registration", interval=0.1)
    return proc


def farm_round(bench: Bench, worker: Proc, urls: list[str], done_before: int) -> dict[str, Any]:
    broker = build_broker(bench.settings)
    servers = [p.pid for p in bench.server_processes()]
    cpu0, servers0 = tree_cpu_by_kind(worker.popen.pid), tree_cpu(*servers)
    started = time.perf_counter()
    try:
        enqueue([NewJob(type="scrape", payload={"url": url}) for url in urls], broker, bench.settings)
    finally:
        broker.client.close()
    want = done_before + len(urls)

    def finished() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the scrape worker exited:\n{worker.log()[-3000:]}")
        return bool(bench.scalar("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'dead')") >= want)

    wait_until(finished, 900, "the scrape jobs", interval=POLL_S)
    seconds = time.perf_counter() - started
    cpu, server_cpu = tree_cpu_by_kind(worker.popen.pid) - cpu0, tree_cpu(*servers) - servers0
    failed = bench.scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
    if failed:
        raise RuntimeError(f"{failed} scrape jobs did not succeed:\n{worker.log()[-3000:]}")
    return {
        "pages": len(urls),
        "seconds": seconds,
        "cpu_s": cpu.total(),
        "by_kind": cpu,
        "server_cpu_s": server_cpu,
    }


def _side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    pages = sum(r["pages"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    out = {
        "pages": pages,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 2),
        "cpu_ms_per_page": round(sum(r["cpu_s"] for r in rounds) / pages * 1000, 1),
        "cpu_ms_per_page_by_process": {
            k: round(sum(r["by_kind"][k] for r in rounds) / pages * 1000, 1)
            for k in sorted({k for r in rounds for k in r["by_kind"]})
        },
        "rounds_cpu_ms_per_page": [round(r["cpu_s"] / r["pages"] * 1000, 1) for r in rounds],
        "rounds_pages_per_s": [round(r["pages"] / r["seconds"], 2) for r in rounds],
    }
    if "server_cpu_s" in rounds[0]:
        out["server_cpu_ms_per_page"] = round(sum(r["server_cpu_s"] for r in rounds) / pages * 1000, 1)
    return out


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    threads, chromium = args.scrape_threads, args.scrape_chromium
    server = serve_pages()
    urls = page_urls(server.server_address[1], args.scrape_pages, HOSTS)
    peer: SteppedPeer | None = None
    try:
        worker = start_worker(bench, threads, chromium)
        peer = start_peer(bench, urls, threads, chromium)
        # Not measured: the first pages of a fresh browser, each side.
        farm_round(bench, worker, urls[:threads], 0)
        peer_round(peer, threads)
        done = threads
        farm, bare = [], []
        for _ in range(args.scrape_rounds):
            farm.append(farm_round(bench, worker, urls, done))
            done += len(urls)
            bare.append(peer_round(peer, len(urls)))
    finally:
        if peer is not None:
            peer.stop()
        bench.stop_all()
        server.shutdown()
        with transaction(bench.settings) as conn:  # the scrapes of the test pages, this run's and older
            conn.execute(sa.text("DELETE FROM scrapes WHERE url LIKE 'http://site%.localhost:%/page/%'"))
    out: dict[str, Any] = {
        "pages": args.scrape_pages,
        "rounds": args.scrape_rounds,
        "hosts": HOSTS,
        "threads": threads,
        "browser": peer.ready if peer else None,
        "jobyard": _side(farm),
        "playwright": _side(bare),
    }
    j, p = out["jobyard"], out["playwright"]
    out["cpu_ratio"] = round(j["cpu_ms_per_page"] / p["cpu_ms_per_page"], 2)
    out["rate_ratio"] = round(j["pages_per_s"] / p["pages_per_s"], 2)
    return out
