"""The scrape and embed scenarios of the harness, as docs/performance.md tells a user to run them, on a
few pages and texts: the harness starts its own services, a real scrape worker and a real embeddings
worker, and their peers (a bare Playwright loop, the model called directly), and reports both sides
and the goals. (The full benchmarks are not run here; this keeps the commands from rotting.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.services import ROOT


def test_the_scrape_and_embed_scenarios_run_and_report_both_sides(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBYARD_")}
    argv = [sys.executable, "-m", "bench", "--only", "scrape,embed", "--out", str(tmp_path)]
    argv += ["--scrape-pages", "6", "--scrape-rounds", "1", "--scrape-threads", "2"]
    argv += ["--embed-documents", "70", "--embed-rounds", "1", "--embed-per-job", "40"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())["results"]
    scrape, embed = results["scrape"], results["embed"]
    for side in ("jobyard", "playwright"):
        assert scrape[side]["pages"] == 6 and scrape[side]["cpu_ms_per_page"] > 0, scrape
    for side in ("jobyard", "direct"):
        assert embed[side]["documents"] == 70 and embed[side]["docs_per_s"] > 0, embed
    assert scrape["cpu_ratio"] > 0 and embed["ratio"] > 0
    report = (tmp_path / "latest.md").read_text()
    assert "| scrape CPU/page <= 1.15x bare Playwright loop |" in report, report
    assert "| embedding >= 0.9x model direct |" in report, report
