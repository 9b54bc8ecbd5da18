"""The harness's output: a markdown table, the raw figures as JSON, and a chart, in bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any


def _vs_fastest_postgres_peer(r: dict[str, Any], goal: float) -> bool | None:
    """Jobyard's HTTP enqueue, single and batched, each >= ``goal`` x the fastest Postgres peer's own
    enqueue of the same kind; None when no Postgres peer ran."""
    e = r["enqueue"]
    ratios = [e.get(f"ratio_vs_fastest_postgres_peer_{k}") for k in ("single", "batch")]
    if all(x is None for x in ratios):
        return None
    return all(x is not None and x >= goal for x in ratios)


#: The issue's goals, checked against every run (None where a scenario was not run). A check that
#: returns None has nothing to compare with (no Postgres peer ran).
GOALS = (
    (
        "idle latency p50 <= Celery's p50",
        lambda r: r["latency"]["jobyard"]["p50_ms"] <= r["latency"]["celery"]["p50_ms"],
        "latency",
    ),
    (
        "idle latency p99 <= 2x Celery's p99",
        lambda r: r["latency"]["jobyard"]["p99_ms"] <= 2 * r["latency"]["celery"]["p99_ms"],
        "latency",
    ),
    ("drain >= 3x bare Dramatiq", lambda r: r["drain"]["ratio_vs_dramatiq"] >= 3, "drain"),
    (
        "drain >= 2x the fastest Postgres peer",
        lambda r: (
            None
            if "ratio_vs_fastest_postgres_peer" not in r["drain"]
            else r["drain"]["ratio_vs_fastest_postgres_peer"] >= 2
        ),
        "drain",
    ),
    (
        "HTTP enqueue >= 6,000 jobs/s single",
        lambda r: r["enqueue"]["single"]["jobs_per_s"] >= 6000,
        "enqueue",
    ),
    (
        "HTTP enqueue >= 40,000 jobs/s batched",
        lambda r: r["enqueue"]["batch"]["jobs_per_s"] >= 40000,
        "enqueue",
    ),
    (
        "HTTP enqueue >= 1.5x the fastest Postgres peer's own enqueue (single and batched)",
        lambda r: _vs_fastest_postgres_peer(r, 1.5),
        "enqueue",
    ),
    ("scheduler dispatch lag p99 < 250 ms", lambda r: r["dispatch"]["p99_ms"] < 250, "dispatch"),
    (
        "idle worker process RSS <= 60 MiB (light queues)",
        lambda r: r["memory"]["jobyard"]["worker_mib"] <= 60,
        "memory",
    ),
    ("idle API process RSS <= 90 MiB", lambda r: r["memory"]["jobyard"]["api_mib"] <= 90, "memory"),
    (
        "sweeper pass < 50 ms of Redis time at 1,000,000 queued",
        lambda r: r["sweeper"]["goal_met"] and r["sweeper"]["queued"] >= 1_000_000,
        "sweeper",
    ),
    (
        "valid client's enqueue p99 under a bad-key flood <= 3x idle",
        lambda r: r["bad_keys"]["limited"]["p99_ratio"] <= 3,
        "bad_keys",
    ),
)

#: The growth scenario's verdicts (bench/scenarios/growth.py), each a key of its "verdicts".
GROWTH_GOALS = (
    ("every throughput >= 0.9x and latency <= 1.2x of the empty history's", "throughputs_and_latencies"),
    ("/v1/queues, overview and /metrics each < 100 ms on the history", "reads_under_100_ms"),
    ("pruning the older half of the history < 60 s", "prune_under_60_s"),
    ("enqueue p99 during the prune < 2x before it", "prune_p99_under_2x"),
    (
        "jobs tables after prune + VACUUM within 20 % of their size before the pruned half's fill",
        "size_within_20_percent_of_before_fill",
    ),
)
GOALS += tuple(
    (f"growth: {label}", lambda r, key=key: r["growth"]["verdicts"][key], "growth")
    for label, key in GROWTH_GOALS
)
GOALS += (
    (
        "fairness: B's enqueue -> start p99 beside A's backlog <= 3x alone",
        lambda r: r["fairness"]["goal_b_p99_within_3x"],
        "fairness",
    ),
    (
        "fairness: A's drain beside B >= 0.8x alone",
        lambda r: r["fairness"]["goal_a_rate_at_least_0_8x"],
        "fairness",
    ),
)

#: The scrape and embed scenarios' goals (their tables: ``scrape_embed_markdown``).
GOALS += (
    (
        "scrape CPU/page <= 1.15x bare Playwright loop",
        lambda r: r["scrape"]["cpu_ratio"] <= 1.15,
        "scrape",
    ),
    ("embedding >= 0.9x model direct", lambda r: r["embed"]["ratio"] >= 0.9, "embed"),
)


def _machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"Run {meta['date']} at commit {meta['commit']}, {meta['cpus']} CPUs, load average (1, 5, 15 min) "
        f"at the start {meta.get('load_average_at_start')} and at the end {meta['load_average_at_end']}, "
        f"{meta['seconds']:.0f} s in all: `{meta['command']}`",
        "",
        "| scenario | Jobyard | bare Dramatiq | Celery | Jobyard / Dramatiq | Jobyard / Celery |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    if "latency" in results:
        r = results["latency"]
        for key in ("p50_ms", "p99_ms"):
            j, d, c = r["jobyard"][key], r["dramatiq"][key], r["celery"][key]
            lines.append(
                f"| idle latency {key[:3]}, enqueue -> start, ms ({r['rate_per_s']:.0f} jobs/s) | {_f(j, 2)} "
                f"| {_f(d, 2)} | {_f(c, 2)} | {j / d:.2f} | {j / c:.2f} |"
            )
        for key, label in (
            ("finished", "Jobyard enqueue -> succeeded (committed)"),
            ("http_answer", "Jobyard enqueue -> HTTP answer (job committed and published)"),
            ("postgres_commit", "one bare Postgres INSERT + COMMIT on the same disk"),
        ):
            part = r["jobyard"][key]
            lines.append(
                f"| {label}, p50 / p99 ms | {_f(part['p50_ms'], 2)} / {_f(part['p99_ms'], 2)} | | | | |"
            )
    if "drain" in results:
        r = results["drain"]
        j, d, c = (r[k]["steady_per_s"] for k in ("jobyard", "dramatiq", "celery"))
        lines.append(
            f"| drain of {r['jobs']:,} jobs, 2 processes, jobs/s (10-90 %) | {_f(j)} | {_f(d)} | {_f(c)} "
            f"| {r['ratio_vs_dramatiq']:.2f} | {r['ratio_vs_celery']:.2f} |"
        )
        j, d, c = (r[k]["whole_per_s"] for k in ("jobyard", "dramatiq", "celery"))
        lines.append(
            f"| drain, whole run, jobs/s | {_f(j)} | {_f(d)} | {_f(c)} | {j / d:.2f} | {j / c:.2f} |"
        )
        j, d, c = (r[k]["cpu_ms_per_1000_jobs"] for k in ("jobyard", "dramatiq", "celery"))
        lines.append(
            f"| drain, CPU ms per 1,000 jobs (workers, Postgres, Redis; 10-90 %) | {_f(j)} | {_f(d)} "
            f"| {_f(c)} | {j / d:.2f} | {j / c:.2f} |"
        )
    if "enqueue" in results:
        r = results["enqueue"]
        for key, label in (("single", "single jobs"), ("batch", "batches of 1,000")):
            e = r[key]
            lines.append(
                f"| HTTP enqueue, {label}, {e['connections']} connections, committed jobs/s | "
                f"{_f(e['jobs_per_s'])} | | | | |"
            )
    if "dispatch" in results:
        r = results["dispatch"]
        lines.append(
            f"| scheduler dispatch lag, {r['jobs']:,} due at once, p50 / p99 ms | {_f(r['p50_ms'])} / "
            f"{_f(r['p99_ms'])} | | | | |"
        )
    if "memory" in results:
        r = results["memory"]
        lines.append(f"| idle API process RSS, MiB | {_f(r['jobyard']['api_mib'])} | | | | |")
        j, d, c = (r[k]["worker_mib"] for k in ("jobyard", "dramatiq", "celery"))
        lines.append(
            f"| idle worker process RSS, MiB | {_f(j)} | {_f(d)} | {_f(c)} | {j / d:.2f} | {j / c:.2f} |"
        )
    if "sweeper" in results:
        r = results["sweeper"]
        for key, label in (("redis_client_ms", "client"), ("redis_server_ms", "server"), ("wall_ms", "wall")):
            now, before = r["now"][key], r["before_15"][key]
            lines.append(
                f"| sweeper pass, {r['queued']:,} queued, {label} ms: now (before issue 15) | {_f(now, 2)} "
                f"({_f(before, 2)}) | | | | |"
            )
    if "bad_keys" in results:
        r = results["bad_keys"]
        for key, label in (("limited", "defaults"), ("no_address_limit", "address limit off")):
            b = r[key]
            lines.append(
                f"| valid client's enqueue p99 idle / during {r['requests_per_round']:,} random keys from 64 "
                f"connections ({label}), ms | {_f(b['idle']['p99_ms'], 2)} / {_f(b['flood']['p99_ms'], 2)} "
                f"({b['p99_ratio']:.2f}x) | | | | |"
            )
    if any(k in results for k in ("latency", "drain", "enqueue", "memory")):
        from bench.peers import table

        lines += ["", *table.markdown(results)]
    if "scrape" in results or "embed" in results:
        lines += ["", *scrape_embed_markdown(results)]
    if "growth" in results:
        lines += ["", *growth_markdown(results["growth"])]
    if "fairness" in results:
        from bench.scenarios import fairness

        lines += ["", *fairness.markdown(results["fairness"])]
    if "webhooks" in results:
        from bench.scenarios import webhooks

        lines += ["", *webhooks.markdown(results["webhooks"])]
    if "tracing" in results:
        from bench.scenarios import tracing

        lines += ["", *tracing.markdown(results["tracing"])]
    if "profiles" in results:
        from bench.scenarios import profiles

        lines += ["", *profiles.markdown(results["profiles"])]
    if "events" in results:
        from bench.scenarios import events

        lines += ["", *events.markdown(results["events"])]
    lines += ["", "| goal | met |", "| --- | --- |"]
    for label, check, scenario in GOALS:
        verdict = None if scenario not in results else check(results)
        met = "not run" if scenario not in results else {True: "yes", False: "**no**"}.get(verdict, "n/a")
        lines.append(f"| {label} | {met} |")
    if "enqueue" in results:
        e = results["enqueue"]
        lines += [
            "",
            f"HTTP enqueue: `jobyard api --workers {e['api_workers']}`; load from wrk, which used "
            f"{e['single']['client_cpu_share']:.0%} (single) and {e['batch']['client_cpu_share']:.0%} "
            f"(batch) of one CPU. CPU per 1,000 jobs, single / batch: the API "
            f"{e['single']['api_cpu_ms_per_1000_jobs']:,.0f} / {e['batch']['api_cpu_ms_per_1000_jobs']:,.0f} ms, "
            f"Postgres and Redis {e['single']['server_cpu_ms_per_1000_jobs']:,.0f} / "
            f"{e['batch']['server_cpu_ms_per_1000_jobs']:,.0f} ms. Non-2xx responses: "
            f"{e['single']['non_2xx']} and {e['batch']['non_2xx']}.",
        ]
    return "\n".join(lines) + "\n"


def scrape_embed_markdown(results: dict[str, Any]) -> list[str]:
    """The scrape and embed scenarios: the farm beside the same work done by a bare program."""
    lines = [
        "| work | Jobyard | peer | Jobyard / peer |",
        "| --- | ---: | ---: | ---: |",
    ]
    if "scrape" in results:
        r = results["scrape"]
        j, p = r["jobyard"], r["playwright"]
        where = f"{r['pages']:,} pages x {r['rounds']} rounds, {r['threads']} at a time"
        lines += [
            f"| scrape ({where}), CPU ms per page: worker + Chromium vs bare Playwright loop | "
            f"{_f(j['cpu_ms_per_page'])} | {_f(p['cpu_ms_per_page'])} | {r['cpu_ratio']:.2f} |",
            f"| scrape, pages/s | {_f(j['pages_per_s'], 2)} | {_f(p['pages_per_s'], 2)} | {r['rate_ratio']:.2f} |",
            f"| scrape, Postgres + Redis CPU ms per page (not in the ratio) | {_f(j['server_cpu_ms_per_page'])} "
            "| | |",
        ]
    if "embed" in results:
        r = results["embed"]
        j, d = r["jobyard"], r["direct"]
        where = (
            f"{r['documents']:,} texts x {r['rounds']} rounds, {r['per_job']} a job, batch {r['batch']}, "
            f"{r['torch_threads']} torch threads"
        )
        lines += [
            f"| embed ({where}), docs/s: embed jobs into pgvector vs the model's `encode` (ratio: median "
            f"of the rounds', {', '.join(f'{x:.2f}' for x in r.get('rounds_ratio', []))}) | "
            f"{_f(j['docs_per_s'])} | {_f(d['docs_per_s'])} | {r['ratio']:.2f} |",
            f"| embed, docs/s of each side's fastest round (pooled ratio {r.get('pooled_ratio', 0):.2f}) | "
            f"{_f(max(j['rounds_docs_per_s']))} | {_f(max(d['rounds_docs_per_s']))} | "
            f"{r.get('best_rounds_ratio', 0):.2f} |",
            f"| embed, CPU ms per document (worker vs model process) | {_f(j['cpu_ms_per_doc'], 2)} | "
            f"{_f(d['cpu_ms_per_doc'], 2)} | {r['cpu_ratio']:.2f} |",
            f"| embed, Postgres + Redis CPU ms per document (not in the ratio) | "
            f"{_f(j['server_cpu_ms_per_doc'], 2)} | | |",
        ]
    if "scrape" in results:
        r = results["scrape"]
        kinds = sorted(
            set(r["jobyard"]["cpu_ms_per_page_by_process"])
            | set(r["playwright"]["cpu_ms_per_page_by_process"])
        )
        by = ", ".join(
            f"{k} {_f(r['jobyard']['cpu_ms_per_page_by_process'].get(k, 0.0))} / "
            f"{_f(r['playwright']['cpu_ms_per_page_by_process'].get(k, 0.0))}"
            for k in kinds
        )
        browser = r.get("browser") or {}
        lines += [
            "",
            f"Scrape: `{browser.get('executable')}` {browser.get('version')}, the same flags both sides. "
            f"CPU ms per page by process, Jobyard / bare loop: {by} (python: the worker or the loop; "
            "node: Playwright's driver; renderer: the renderers, reaped by their zygote). Per round, "
            f"Jobyard {r['jobyard']['rounds_cpu_ms_per_page']} and the loop {r['playwright']['rounds_cpu_ms_per_page']} "
            "ms per page.",
        ]
    return lines


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def growth_markdown(r: dict[str, Any]) -> list[str]:
    """The growth scenario's own tables: the ratios, the prune under load, the sizes, the verdicts."""
    f, p = r["fill"], r["prune"]
    halves = " and ".join(
        f"the {name} half ({h['jobs']:,} jobs finishing from {h['finished_from'][:16]} to "
        f"{h['finished_to'][:16]} UTC) in {h['insert_s']:,.0f} s ({h['jobs_per_s']:,} jobs/s)"
        for name, h in (("kept", f["kept"]), ("prunable", f["prunable"]))
    )
    lines = [
        f"Growth: {r['history_jobs']:,} finished jobs written as the farm leaves them (succeeded and cancelled "
        f"into job_history's day partitions, dead into jobs and job_attempts): {halves}; "
        f"{f['jobs_per_s']:,} jobs/s in all, VACUUM ANALYZE {f['vacuum_analyze_s']:,.0f} s, CHECKPOINT {f.get('checkpoint_s', 0):,.0f} s. Each figure "
        "measured on an empty database beside the history's, on the same server, and on the history's, "
        "the two taking turns.",
        "",
        "| figure | empty history | with the history | ratio | goal | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in r["ratios"]:
        goal = {"throughput": ">= 0.9x", "read": "< 100 ms"}.get(row["kind"], "<= 1.2x")
        lines.append(
            f"| {row['figure']} | {_f(row['empty'], 2)} | {_f(row['history'], 2)} | {_f(row['ratio'], 2)} "
            f"| {goal} | {'yes' if row['met'] else '**no**'} |"
        )
    rounds = [row for row in r["ratios"] if all(row.get("rounds") or [None])]
    if rounds:
        lines += [
            "",
            f"Each figure above but the reads is the median of {len(rounds[0]['rounds'][0])} rounds on "
            "each side; the rounds, in the order they ran:",
            "",
            "| figure | empty history | with the history |",
            "| --- | --- | --- |",
            *(
                f"| {row['figure']} | {', '.join(_f(x, 1) for x in row['rounds'][0])} "
                f"| {', '.join(_f(x, 1) for x in row['rounds'][1])} |"
                for row in rounds
            ),
        ]
    b, d = p["enqueue_before"], p["enqueue_during"]
    counts = ", ".join(f"{k} {n:,}" for k, n in p["pruned_counts"].items()) or "none"
    dropped = p["partitions_dropped"]
    days = f"{dropped[0][-8:]} to {dropped[-1][-8:]}" if dropped else "none"
    lines += [
        "",
        f"Pruning: every final status kept {p['retention_s'] / 86400:.0f} days, batches of {p['prune_batch']}, "
        f"`core.engine.retention.prune` called by the harness while `jobyard api` and a worker took, from "
        f"{p['load_threads']} paced client threads, "
        f"{p['load_rate_asked']:,.0f} single-job enqueues/s asked ({b['jobs_per_s']:,.0f} before, "
        f"{d['jobs_per_s']:,.0f} during, as sent).",
        "",
        "| pruning | figure |",
        "| --- | ---: |",
        f"| history jobs before / after | {p['history_jobs_before']:,} / {p['history_jobs_after']:,} |",
        f"| job_history partitions before / after | {p['partitions_before']} / {p['partitions_after']} |",
        f"| days dropped (the prunable half's: {f['prunable']['partitions_made']}) | {len(dropped)}: {days} |",
        f"| removed, as prune_counts has it (table/status) | {counts} |",
        f"| time to prune, s | {p['prune_s']:,.1f} |",
        f"| jobs pruned a second | {p['jobs_pruned_per_s']:,} |",
        f"| enqueue p50 / p99 before the prune, ms | {_f(b['p50_ms'], 2)} / {_f(b['p99_ms'], 2)} |",
        f"| enqueue p50 / p99 during the prune, ms | {_f(d['p50_ms'], 2)} / {_f(d['p99_ms'], 2)} |",
        f"| p99 during / before | {p['p99_ratio']:.2f}x |",
        f"| enqueues without a 201 (status or error: count), before / during | {b['failed'] or 0} / "
        f"{d['failed'] or 0} |",
        f"| VACUUM after the prune, s | {p['vacuum_s']:,.1f} |",
    ]
    if p["day_changed"]:
        lines.append(
            "| **the run crossed UTC midnight**: the kept half's first day was past retention too | |"
        )
    return [*lines, "", *_sizes_markdown(r)]


_PHASES = (
    ("before_fill", "before the fill (empty)"),
    ("after_kept_half", "after the kept half"),
    ("after_fill", "after the fill"),
    ("before_prune", "before the prune"),
    ("after_prune_vacuum", "after the prune and VACUUM"),
)


def _sizes_markdown(r: dict[str, Any]) -> list[str]:
    sizes, v = r["sizes"], r["verdicts"]
    lines = [
        f"| size, MiB (rows) | {' | '.join(label for _, label in _PHASES)} |",
        f"| --- |{' ---: |' * len(_PHASES)}",
    ]
    for table in ("jobs", "job_attempts", "job_history"):
        for key, label in (("table_bytes", "table"), ("index_bytes", "indexes")):
            cells = []
            for phase, _ in _PHASES:
                s = sizes[phase][table]
                rows = f" ({s['rows']:,})" if key == "table_bytes" else ""
                cells.append(f"{_mib(s[key])}{rows}")
            lines.append(f"| {table}, {label} | {' | '.join(cells)} |")
    parts = (str(sizes[phase]["job_history"]["partitions"]) for phase, _ in _PHASES)
    totals = (sum(t["total_bytes"] for t in sizes[phase].values()) for phase, _ in _PHASES)
    met = "met" if v["size_within_20_percent_of_before_fill"] else "**not met**"
    return [
        *lines,
        f"| job_history, partitions | {' | '.join(parts)} |",
        f"| all three, with indexes | {' | '.join(_mib(t) for t in totals)} |",
        "",
        f"After the prune and VACUUM the three tables take {r['size_after_vs_before_fill']:.2f}x their size "
        f"after the kept half, that is before the fill of the half that was pruned (goal: within 20 %: "
        f"{met}); {r['size_after_vs_empty']:,}x their size before any fill (information: the kept half is "
        "still there). Dropped days give their files back; the dead jobs deleted by batches from jobs and "
        "job_attempts, and the measurements' own jobs deleted by the resets, leave space that VACUUM makes "
        "reusable but does not give back.",
    ]


def chart(results: dict[str, Any], path: Path) -> None:
    keys = [k for k in ("latency", "drain", "enqueue", "memory") if k in results]
    if not keys:
        return  # nothing it draws was run (and matplotlib, of the bench extra, is not needed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.peers.queues import LABELS, NAMES

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.5), squeeze=False)
    every = (("jobyard", "Jobyard"), ("dramatiq", "bare Dramatiq"), ("celery", "Celery"))
    every += tuple((n, LABELS[n]) for n in NAMES)
    palette = ("#2b6cb0", "#718096", "#a0aec0", "#2f855a", "#68d391", "#b7791f", "#c05621")
    colors = dict(zip((n for n, _ in every), palette, strict=True))

    def ran(r: dict[str, Any], key: str) -> list[tuple[str, str]]:
        return [(n, label) for n, label in every if isinstance(r.get(n), dict) and key in r[n]]

    for ax, key in zip(axes[0], keys, strict=True):
        r = results[key]
        if key == "latency":
            shown = ran(r, "p50_ms")
            for i, (n, _) in enumerate(shown):
                ax.bar([i - 0.2, i + 0.2], [r[n]["p50_ms"], r[n]["p99_ms"]], width=0.38, color=colors[n])
            ax.set_yscale("log")
            ax.axhline(r["celery"]["p50_ms"], color="#c53030", lw=1, ls="--", label="goal p50: Celery's")
            ax.axhline(
                2 * r["celery"]["p99_ms"], color="#dd6b20", lw=1, ls="--", label="goal p99: 2x Celery's"
            )
            ax.set_title("idle latency, left p50, right p99 (ms)")
            ax.legend(fontsize=8)
        elif key == "drain":
            shown = ran(r, "steady_per_s")
            ax.bar(
                range(len(shown)),
                [r[n]["steady_per_s"] for n, _ in shown],
                color=[colors[n] for n, _ in shown],
            )
            ax.set_title(f"drain of {r['jobs']:,} jobs (jobs/s)")
        elif key == "enqueue":
            shown = [("jobyard", "Jobyard (HTTP)")] + [
                (n, label) for n, label in ran(r, "single") if n in NAMES
            ]
            for i, (n, _) in enumerate(shown):
                e = r if n == "jobyard" else r[n]
                batch = e["batch"]["jobs_per_s"] if "batch" in e else 0
                ax.bar([i - 0.2, i + 0.2], [e["single"]["jobs_per_s"], batch], width=0.38, color=colors[n])
            ax.set_yscale("log")
            ax.set_title("enqueue, left single, right batched (committed jobs/s)")
        else:
            shown = ran(r, "worker_mib")
            ax.bar(
                range(len(shown)), [r[n]["worker_mib"] for n, _ in shown], color=[colors[n] for n, _ in shown]
            )
            ax.set_title("idle worker process RSS (MiB)")
        ax.set_xticks(range(len(shown)), [label for _, label in shown], rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(results: dict[str, Any], args: argparse.Namespace, seconds: float, argv: list[str]) -> str:
    meta = {
        **_machine(),
        "load_average_at_start": getattr(args, "load_at_start", None),
        "seconds": round(seconds, 1),
        "command": ("python -m bench " + " ".join(argv[1:])).strip(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    doc = markdown(results, meta)
    (args.out / "latest.md").write_text(doc)
    (args.out / "latest.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    chart(results, args.out / "latest.png")
    return doc
