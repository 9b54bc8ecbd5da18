"""The scrape and embed scenarios' report, with no services: their rows beside their peers, and
their two goals judged from the ratios."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.__main__ import SCENARIOS, parse

META = {
    "date": "d",
    "commit": "c",
    "cpus": 2,
    "load_average_at_end": [1, 1, 1],
    "seconds": 1.0,
    "command": "x",
}


def _scrape(jobyard_ms: float, loop_ms: float) -> dict[str, Any]:
    side = {
        "pages": 200,
        "seconds": 20.0,
        "pages_per_s": 10.0,
        "cpu_ms_per_page": jobyard_ms,
        "cpu_ms_per_page_by_process": {"python": 10.0, "renderer": 50.0},
        "rounds_cpu_ms_per_page": [jobyard_ms, jobyard_ms],
        "rounds_pages_per_s": [10.0, 10.0],
    }
    return {
        "pages": 100,
        "rounds": 2,
        "hosts": 20,
        "threads": 8,
        "browser": {"executable": "/usr/bin/chromium-headless-shell", "version": "156"},
        "jobyard": {**side, "server_cpu_ms_per_page": 5.0},
        "playwright": {**side, "cpu_ms_per_page": loop_ms, "rounds_cpu_ms_per_page": [loop_ms, loop_ms]},
        "cpu_ratio": round(jobyard_ms / loop_ms, 2),
        "rate_ratio": 1.0,
    }


def _embed(ratio: float) -> dict[str, Any]:
    side = {
        "documents": 2000,
        "seconds": 20.0,
        "docs_per_s": 100.0,
        "cpu_ms_per_doc": 10.0,
        "rounds_docs_per_s": [1.0],
    }
    return {
        "model": "m",
        "documents": 1000,
        "rounds": 2,
        "per_job": 200,
        "batch": 64,
        "worker_threads": 2,
        "torch_threads": 2,
        "jobyard": {**side, "docs_per_s": 100.0 * ratio, "server_cpu_ms_per_doc": 1.0},
        "direct": side,
        "ratio": ratio,
        "rounds_ratio": [ratio, ratio],
        "cpu_ratio": 1.0,
    }


def test_both_scenarios_are_in_the_default_run() -> None:
    assert {"scrape", "embed"} <= set(SCENARIOS)
    assert {"scrape", "embed"} <= set(parse([]).only)


def test_the_rows_and_the_goals() -> None:
    doc = report.markdown({"scrape": _scrape(112.0, 100.0), "embed": _embed(0.95)}, META)
    assert "| scrape (100 pages x 2 rounds, 8 at a time), CPU ms per page" in doc
    assert "| 112.0 | 100.0 | 1.12 |" in doc
    assert "| 95.0 | 100.0 | 0.95 |" in doc
    assert "| scrape CPU/page <= 1.15x bare Playwright loop | yes |" in doc
    assert "| embedding >= 0.9x model direct | yes |" in doc
    doc = report.markdown({"scrape": _scrape(120.0, 100.0), "embed": _embed(0.85)}, META)
    assert "| scrape CPU/page <= 1.15x bare Playwright loop | **no** |" in doc
    assert "| embedding >= 0.9x model direct | **no** |" in doc
    assert "| scrape CPU/page <= 1.15x bare Playwright loop | not run |" in report.markdown({}, META)
