"""Where the time goes: py-spy profiles of the API under the single-job enqueue load and of a worker
draining a backlog, and what a light worker imports at start.

- API: `jobyard api --workers 1` under wrk (64 kept-alive connections posting single jobs); py-spy
  samples the serving process for ``--profile-seconds`` in the middle of the load.
- Worker: `jobyard worker` (the harness's 2 processes, 8 threads) draining ``--profile-jobs``
  `unread_count` jobs queued before it starts; py-spy samples one of its processes.
- Imports: `python -X importtime` of what a worker process imports at start (`workers.entrypoint`,
  the module the Dramatiq CLI loads), the slowest modules and the whole start-up.

Each profile is summed two ways: the share of samples whose stack passes through an area (logging,
the Postgres driver, the Redis client, the HTTP server, Litestar, Jobyard's own code; they overlap),
and the functions that were on top of the stack most often (self time). Run it on a quiet machine:

    python -m bench --only profiles --out /tmp/profiles
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Bench, wait_until
from bench.scenarios.drain import queue_backlog

PY_SPY = str(Path(sys.executable).parent / "py-spy")
#: Areas of a stack, by the file of any of its frames as py-spy names it (``func (pkg/file.py:12)``);
#: a sample may count in several.
AREAS: dict[str, tuple[str, ...]] = {
    "logging (stdlib logging, structlog, our chain)": (
        "(logging/__init__.py",
        "(structlog/",
        "(core/platform/logs.py",
        "(core/platform/redact.py",
    ),
    "Postgres driver (psycopg, SQLAlchemy)": ("(psycopg/", "(sqlalchemy/"),
    "Redis client (redis-py)": ("(redis/",),
    "HTTP server (uvicorn, httptools)": ("(uvicorn/",),
    "Litestar (routing, DI, responses)": ("(litestar/",),
    "Dramatiq (worker threads, middleware calls)": ("(dramatiq/",),
    "Jobyard's own code": ("(core/", "(control_api/", "(workers/"),
}
#: Top frames of a thread that waits for work rather than doing it (a condition or event, the event
#: loop's poll, Dramatiq's timer and master threads, the log writer's thread in its sleep between
#: writes or waiting for its lock, whose writing shows as the frames above it): left out of the
#: shares, counted apart.
IDLE = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "LineWriter._run (core/platform/logs.py",
    "Runner.run (asyncio/runners.py",
    "_CtypesTimeoutManager.run (dramatiq/",
    "worker_process (dramatiq/cli.py",
)
TOP = 15


def _record(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy's raw (collapsed) samples of ``pid`` for ``seconds``, summed."""
    subprocess.run(
        [
            PY_SPY,
            "record",
            "-p",
            str(pid),
            "-d",
            str(round(seconds)),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return summarize(out.read_text())


def summarize(collapsed: str) -> dict[str, Any]:
    """Area shares and the top self frames of py-spy's collapsed stacks (``frame;frame;... count``)."""
    total = idle = 0
    areas: Counter[str] = Counter()
    tops: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        if stack.rsplit(";", 1)[-1].startswith(IDLE):
            idle += n
            continue
        total += n
        for area, marks in AREAS.items():
            if any(m in stack for m in marks):
                areas[area] += n
        tops[_frame(stack.split(";")[-1])] += n
    return {
        "samples": total,
        "idle_samples": idle,
        "areas": {a: round(100 * areas[a] / max(total, 1), 1) for a in AREAS},
        "top_self": [(f, round(100 * n / max(total, 1), 1)) for f, n in tops.most_common(TOP)],
    }


def _frame(frame: str) -> str:
    """``func (pkg/file.py:123)`` as ``func (pkg/file.py)``."""
    match = re.match(r"(.*) \((.*?):?(\d*)\)$", frame)
    if not match:
        return frame
    func, path = match.group(1), match.group(2)
    for prefix in ("site-packages/", str(ROOT) + "/"):
        path = path.split(prefix, 1)[-1]
    return f"{func} ({path})"


def _api(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    proc, base = bench.api(workers=1)
    body = bench.workdir / "profile-body.json"
    body.write_text(json.dumps({"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u"}}))
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_API_KEY": bench.api_key}
    lead = 3.0
    wrk = subprocess.Popen(
        [
            "wrk",
            "-t1",
            "-c64",
            f"-d{round(args.profile_seconds + 2 * lead)}s",
            "-s",
            str(ROOT / "bench" / "wrk" / "post.lua"),
            base + "/v1/jobs",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(lead)  # connections open, caches warm
        serving = proc.tree()[-1].pid  # uvicorn's worker process (the last started)
        result = _record(serving, args.profile_seconds, bench.workdir / "api.txt")
    finally:
        wrk.wait()
    bench.stop_all()
    return result


def _worker(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    n = args.profile_jobs
    queue_backlog(bench, n)
    worker = bench.worker()
    child = worker.tree()[-1].pid
    result = _record(child, args.profile_seconds, bench.workdir / "worker.txt")
    done = bench.scalar(f"SELECT count(*) FROM jobs WHERE status = 'succeeded' AND {bench.fresh()}")
    result["still_draining_at_the_end"] = done < n
    wait_until(
        lambda: (
            bench.scalar(f"SELECT count(*) FROM jobs WHERE status = 'succeeded' AND {bench.fresh()}") >= n
        ),
        300,
        "the drain",
        interval=0.2,
    )
    bench.stop_all()
    return result


def _imports(bench: Bench) -> dict[str, Any]:
    """What a worker process imports at start (the module the Dramatiq CLI loads), by time."""
    code = "import workers.entrypoint"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=bench.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows: list[tuple[str, int]] = []
    total = 0
    for line in out.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not match:
            continue
        module, cumulative = match.group(4), int(match.group(2))
        if module == "workers.entrypoint":
            total = cumulative
        elif "." not in module:  # a package, where its first import paid for all of it
            rows.append((module, cumulative))
    rows.sort(key=lambda r: -r[1])
    return {"total_ms": round(total / 1000, 1), "slowest": [(m, round(us / 1000, 1)) for m, us in rows[:TOP]]}


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    return {"api": _api(bench, args), "worker": _worker(bench, args), "imports": _imports(bench)}


def markdown(result: dict[str, Any]) -> list[str]:
    lines = ["### Profiles (py-spy)", ""]
    for name, title in (
        ("api", "API under the single-job enqueue load"),
        ("worker", "a worker process draining a backlog"),
    ):
        prof = result.get(name)
        if not prof:
            continue
        lines += [
            f"**{title}** ({prof['samples']:,} busy samples; {prof['idle_samples']:,} of threads waiting for work "
            "left out)",
            "",
            "| area (a sample may be in several) | share of busy samples, % |",
            "| --- | ---: |",
        ]
        lines += [f"| {area} | {share} |" for area, share in prof["areas"].items()]
        lines += ["", "| on top of the stack | % |", "| --- | ---: |"]
        lines += [f"| `{frame}` | {share} |" for frame, share in prof["top_self"]]
        lines.append("")
    imports = result.get("imports")
    if imports:
        lines += [
            f"**A worker process's imports**: {imports['total_ms']} ms in all (`python -X importtime -c "
            "'import workers.entrypoint'`)",
            "",
            "| package (its first import, all it pulled in) | ms, cumulative |",
            "| --- | ---: |",
        ]
        lines += [f"| `{m}` | {ms} |" for m, ms in imports["slowest"]]
    return lines
