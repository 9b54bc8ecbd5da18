"""The scrape benchmark, as docs/performance.md tells a user to run it, on a few pages: it starts its own
services and a real scrape worker, scrapes through the farm and with a browser launch per page, and
prints both rates. (The full benchmarks are not run here; this keeps the command from rotting.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.services import ROOT


def test_the_scrape_benchmark_runs_and_reports_both_rates() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.scrape_throughput", "--pages", "6", "--threads", "2", "--hosts", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    farm = re.search(r"through the farm .*?:\s+([\d.]+) pages/s", done.stdout)
    fresh = re.search(r"a fresh browser launched per page:\s+([\d.]+) pages/s", done.stdout)
    ratio = re.search(r"farm / fresh launch: ([\d.]+)x", done.stdout)
    assert farm and fresh and ratio, done.stdout
    assert float(farm.group(1)) > 0 and float(fresh.group(1)) > 0
