"""The scrape scenario's peer: a bare Playwright loop, one browser, a fresh context per page.

    python -m bench.peers.playwright_loop --urls FILE [--concurrency 8] [--chromium PATH]

What a program that drives Playwright itself would do, written as plainly as it goes: launch one
browser (the same binary, flags and environment as the farm's workers: core.providers.browser),
then for every URL a new context and page, `goto` until `load`, read the title, text and links in
one `evaluate` (the farm's own script, core.providers.page), close the context. ``--concurrency``
pages at a time (the farm's worker threads), each task looping over the shared list. No proxy, no
routes, no database, no queue.

It prints `ready {json}` once the browser runs; then, for every line on stdin (`go`, or `go N`:
the first N only), loads every page and prints `done {json}`; at the end of stdin it closes the browser and exits. The harness measures
its process tree's CPU between the line it sends and `done`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.providers.browser import LAUNCH_ARGS, VIEWPORT, browser_env, find_chromium
from core.providers.page import _EXTRACT, MAX_LINKS, MAX_MATCHES_PER_SELECTOR, MAX_PAGE_TEXT

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def main(urls: list[str], concurrency: int, chromium: str | None) -> None:
    from playwright.async_api import async_playwright

    loop = asyncio.get_running_loop()
    home = Path(tempfile.mkdtemp(prefix="bench-chromium-"))
    async with async_playwright() as pw:
        executable = find_chromium(chromium, pw.chromium.executable_path)
        browser = await pw.chromium.launch(
            executable_path=executable,
            headless=True,
            env=dict[str, str | float | bool](browser_env(home)),
            args=list(LAUNCH_ARGS),
        )
        ready = {"executable": executable or pw.chromium.executable_path, "version": browser.version}
        print("ready " + json.dumps(ready), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            count = int(line.split()[1]) if len(line.split()) > 1 else len(urls)
            started = time.perf_counter()
            titles = await load_all(browser, urls[:count], concurrency)
            seconds = time.perf_counter() - started
            bad = sum(not t.startswith("Page ") for t in titles)
            print("done " + json.dumps({"pages": len(titles), "seconds": seconds, "bad": bad}), flush=True)
        await browser.close()


async def load_all(browser: Browser, urls: list[str], concurrency: int) -> list[str]:
    todo = iter(urls)
    titles: list[str] = []

    async def loop() -> None:
        for url in todo:
            context = await browser.new_context(
                viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]}
            )
            try:
                page = await context.new_page()
                await page.goto(url, wait_until="load")
                found = await page.evaluate(
                    _EXTRACT, [{}, MAX_LINKS, MAX_MATCHES_PER_SELECTOR, MAX_PAGE_TEXT]
                )
                titles.append(found["title"])
            finally:
                await context.close()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return titles


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--urls", type=Path, required=True, help="a file of URLs, one a line")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chromium", default=None)
    args = parser.parse_args()
    asyncio.run(main(args.urls.read_text().split(), args.concurrency, args.chromium))
