"""The report's section on every peer: one row a system (Jobyard, bare Dramatiq, Celery and the queue
peers of bench/peers/queues.py) with its figures from the latency, drain, enqueue and memory
scenarios, the ratios issue 23 asks for, and why a peer has no figures where it has none."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from bench.peers import queues
from bench.report import _f

SYSTEMS = (
    ("jobyard", "Jobyard"),
    ("dramatiq", "bare Dramatiq"),
    ("celery", "Celery"),
    *(
        (p.name, f"{p.label} ({'Postgres' if p.store == 'postgres' else 'Redis'})")
        for p in queues.QUEUE_PEERS
    ),
)


def _get(results: dict[str, Any], scenario: str, name: str) -> dict[str, Any] | None:
    r = results.get(scenario, {}).get(name)
    return r if isinstance(r, dict) else None


def _cell(results: dict[str, Any], scenario: str, name: str, text: Any) -> str:
    """A figure, or why there is none: '-' (not run), 'not run' (the peer cannot run) or 'failed'."""
    r = _get(results, scenario, name)
    if r is None:
        return "-"
    if "error" in r:
        return "not run" if r.get("unavailable") else "failed"
    return str(text(r))


def _version(results: dict[str, Any], name: str) -> str:
    if name == "jobyard":
        return "this commit"
    if name in ("dramatiq", "celery"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "-"
    for scenario in ("drain", "latency", "enqueue", "memory"):
        r = _get(results, scenario, name)
        if r and "version" in r:
            return str(r["version"])
    return "-"


def _enqueue(results: dict[str, Any], name: str, kind: str) -> str:
    if name == "jobyard":
        e = results.get("enqueue", {}).get(kind)
        return f"{_f(e['jobs_per_s'])} (HTTP)" if e else "-"
    if name in ("dramatiq", "celery"):
        return "-"
    return _cell(
        results,
        "enqueue",
        name,
        lambda r: _f(r[kind]["jobs_per_s"]) if kind in r else "no batch API",
    )


def markdown(results: dict[str, Any]) -> list[str]:
    lines = [
        "Every peer, same run (2 worker processes each; figures as in docs/performance.md#peers):",
        "",
        "| system | version | idle latency p50 / p99, ms | drain, jobs/s (10-90 %) | drain, whole run, "
        "jobs/s | drain, CPU ms per 1,000 jobs | enqueue, single, jobs/s | enqueue, batched, jobs/s "
        "| idle worker RSS, MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in SYSTEMS:
        cells = [
            _version(results, name),
            _cell(results, "latency", name, lambda r: f"{_f(r['p50_ms'], 2)} / {_f(r['p99_ms'], 2)}"),
            _cell(results, "drain", name, lambda r: _f(r["steady_per_s"])),
            _cell(results, "drain", name, lambda r: _f(r["whole_per_s"])),
            _cell(results, "drain", name, lambda r: _f(r["cpu_ms_per_1000_jobs"])),
            _enqueue(results, name, "single"),
            _enqueue(results, name, "batch"),
            _cell(results, "memory", name, lambda r: _f(r["worker_mib"])),
        ]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    enqueued = results.get("enqueue", {})
    singles = {
        n: enqueued[n]["single"]
        for n in queues.NAMES
        if isinstance(enqueued.get(n), dict) and "single" in enqueued[n]
    }
    if singles:
        tasks = next(iter(singles.values())).get("tasks", "-")
        shares = ", ".join(f"{queues.LABELS[n]} {r['client_cpu_share']:.0%}" for n, r in singles.items())
        lines += [
            "",
            f"Enqueue: Jobyard's over HTTP (wrk); each peer's with its own client API from one process, {tasks} "
            "concurrent tasks of single jobs, then batches of 1,000 where it has a batch API. The client's "
            f"share of one core, single jobs: {shares}.",
        ]
    notes = [
        f"- {queues.LABELS[name]}, {scenario}: {results[scenario][name]['error'].splitlines()[0][:300]}"
        for scenario in ("latency", "drain", "enqueue", "memory")
        for name in queues.NAMES
        if "error" in (_get(results, scenario, name) or {})
    ]
    if notes:
        lines += ["", "Peers without figures, and why:", "", *notes]
    return [*lines, "", *ratios(results)]


def ratios(results: dict[str, Any]) -> list[str]:
    """Issue 23's ratios, each with its goal."""
    rows: list[tuple[str, float | None, str, bool | None]] = []
    if "drain" in results:
        d = results["drain"]
        fastest = d.get("fastest_postgres_peer")
        ratio = d.get("ratio_vs_fastest_postgres_peer")
        rows.append(
            (
                f"Jobyard drain / fastest Postgres peer's drain ({queues.LABELS.get(fastest or '', 'none ran')})",
                ratio,
                ">= 2x",
                None if ratio is None else ratio >= 2,
            )
        )
        rows.append(
            (
                "Jobyard drain / bare Dramatiq's drain",
                d["ratio_vs_dramatiq"],
                ">= 3x",
                d["ratio_vs_dramatiq"] >= 3,
            )
        )
    if "enqueue" in results:
        e = results["enqueue"]
        for kind, label in (("single", "single jobs"), ("batch", "batched")):
            fastest = e.get(f"fastest_postgres_peer_{kind}")
            ratio = e.get(f"ratio_vs_fastest_postgres_peer_{kind}")
            rows.append(
                (
                    f"Jobyard HTTP enqueue / fastest Postgres peer's own enqueue, {label} "
                    f"({queues.LABELS.get(fastest or '', 'none ran')})",
                    ratio,
                    ">= 1.5x",
                    None if ratio is None else ratio >= 1.5,
                )
            )
    if "latency" in results:
        lat = results["latency"]
        for key, goal in (("p50_ms", 1.0), ("p99_ms", 2.0)):
            ratio = round(lat["jobyard"][key] / lat["celery"][key], 2)
            rows.append(
                (
                    f"Jobyard idle latency {key[:3]} / Celery's {key[:3]}",
                    ratio,
                    f"<= {goal:g}x",
                    ratio <= goal,
                )
            )
    if not rows:
        return []
    met = {True: "yes", False: "**no**", None: "n/a"}
    return [
        "| ratio (issue 23) | value | goal | met |",
        "| --- | ---: | --- | --- |",
        *(f"| {label} | {_f(value, 2)} | {goal} | {met[ok]} |" for label, value, goal, ok in rows),
    ]
