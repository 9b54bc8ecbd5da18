"""What tracing costs the HTTP enqueue: `POST /v1/jobs` (one job a request, 64 connections, wrk) with
tracing off and with tracing on, exporting over OTLP/HTTP to a local receiver, side by side.

The sides alternate within each of ``--tracing-rounds`` rounds, so a machine whose load drifts
weighs on all alike; each side's figure is its median round. The rate is the jobs Postgres holds at
the end over wrk's duration (as the enqueue scenario counts). With ``--tracing-baseline PATH`` (a
checkout of the code before tracing), its API is measured as a third side, to show what the off
path costs against code without it.

The receiver runs in the harness's process and parses every export (tests/fakes/otlp.py), counting
the spans; the spans it got per job are reported. The SDK's batch queue is made large enough and
its exports frequent enough that no span is dropped: the figure is the cost of exporting every span
of every request. (With its defaults, a queue of 2,048 spans exported every 5 s, the SDK drops
what does not fit, by design; what it drops costs less than what it exports.)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from typing import Any

from bench.harness import Bench
from bench.scenarios.enqueue import _job, _wrk
from tests.fakes.otlp import FakeOtlpReceiver


def _round(bench: Bench, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    bench.reset()
    _, base = bench.api(workers=args.api_workers, env=env)
    _wrk(bench, base, "/v1/jobs", _job(0), args.enqueue_connections, 1)  # warm-up
    bench.reset()
    time.sleep(0.5)
    result = _wrk(bench, base, "/v1/jobs", _job(0), args.enqueue_connections, args.enqueue_seconds)
    jobs = int(bench.scalar(f"SELECT count(*) FROM jobs WHERE {bench.fresh()}"))
    bench.stop_all()
    return {
        "jobs_per_s": round(jobs / result["duration_s"], 1),
        "latency_p50_ms": result["latency_p50_ms"],
        "latency_p99_ms": result["latency_p99_ms"],
        "api_cpu_ms_per_1000_jobs": round(result["api_cpu_s"] / max(jobs, 1) * 1e6, 1),
        "non_2xx": result["non_2xx"],
        "jobs": jobs,
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("jobs_per_s", "latency_p50_ms", "latency_p99_ms", "api_cpu_ms_per_1000_jobs")
    return {k: statistics.median(r[k] for r in rounds if r[k] is not None) for k in keys} | {"rounds": rounds}


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Jobs/s and API CPU per job of ``a`` over ``b``; the CPU is the steadier on a shared machine."""
    return {
        "jobs_per_s": round(a["jobs_per_s"] / b["jobs_per_s"], 3),
        "api_cpu_per_job": round(a["api_cpu_ms_per_1000_jobs"] / b["api_cpu_ms_per_1000_jobs"], 3),
    }


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    receiver = FakeOtlpReceiver(keep=False)
    on = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }
    sides: dict[str, dict[str, str]] = {"off": {}, "on": on}
    if args.tracing_baseline:
        sides["before"] = {"PYTHONPATH": str(args.tracing_baseline)}
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    try:
        for _ in range(args.tracing_rounds):
            for side, env in sides.items():
                spans_before = receiver.span_count
                result = _round(bench, args, env)
                # Stopping the API exported its last spans (the SDK flushes at exit).
                spans = receiver.span_count - spans_before
                result["spans_per_job"] = round(spans / max(result["jobs"], 1), 2)
                rounds[side].append(result)
    finally:
        receiver.close()
    out: dict[str, Any] = {side: _median(r) for side, r in rounds.items()}
    out["on_over_off"] = _ratios(out["on"], out["off"])
    if "before" in out:
        out["off_over_before"] = _ratios(out["off"], out["before"])
    out["api_workers"] = args.api_workers
    out["connections"] = args.enqueue_connections
    return out


def markdown(r: dict[str, Any]) -> list[str]:
    """The report's section: each side's medians, the ratios, then every round."""
    sides = [s for s in ("off", "on", "before") if s in r]
    label = {"off": "tracing off", "on": "tracing on (OTLP/HTTP)", "before": "before tracing"}
    lines = [
        f"Tracing: `POST /v1/jobs`, one job a request, {r['connections']} connections, "
        f"`jobyard api --workers {r['api_workers']}`; each side the median of "
        f"{len(r['off']['rounds'])} rounds, the sides taking turns. Tracing on / off: "
        f"**{r['on_over_off']['jobs_per_s']:.3f}x** the jobs/s, {r['on_over_off']['api_cpu_per_job']:.3f}x "
        "the API's CPU per job"
        + (
            f"; off / before tracing: **{r['off_over_before']['jobs_per_s']:.3f}x** the jobs/s, "
            f"{r['off_over_before']['api_cpu_per_job']:.3f}x the API's CPU per job."
            if "off_over_before" in r
            else "."
        ),
        "",
        "| side | jobs/s | p50 ms | p99 ms | API CPU ms per 1,000 jobs | spans received per job |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for side in sides:
        s = r[side]
        spans = statistics.median(x["spans_per_job"] for x in s["rounds"])
        lines.append(
            f"| {label[side]} | {s['jobs_per_s']:,.1f} | {s['latency_p50_ms']:.2f} | {s['latency_p99_ms']:.2f} "
            f"| {s['api_cpu_ms_per_1000_jobs']:,.1f} | {spans:.2f} |"
        )
    lines += ["", "| round | " + " | ".join(f"{label[s]} jobs/s" for s in sides) + " |"]
    lines.append("| --- |" + " ---: |" * len(sides))
    for i in range(len(r["off"]["rounds"])):
        lines.append(
            f"| {i + 1} | " + " | ".join(f"{r[s]['rounds'][i]['jobs_per_s']:,.1f}" for s in sides) + " |"
        )
    return lines
