"""HTTP enqueue throughput: `POST /v1/jobs` from 64 kept-alive connections, and `POST /v1/jobs/batch`
with 1,000 jobs a request, each job committed in Postgres before its response.

The load comes from wrk (C, one thread, a Lua script for the bodies), so the client takes little of
the machine; its CPU time is measured and reported. The rate counted is the jobs Postgres holds at
the end divided by wrk's duration, not the responses wrk saw. The one API key sending it all has
its rate limit raised (KEY_LIMITS): the default, 5,000 requests/s with a burst of 10,000, would cap
the single-job figure at about 6,000 jobs/s over ten seconds, so the run would measure the default
policy instead of the farm. The limiter still runs, and costs what it costs at the default.

The queue peers (procrastinate, PgQueuer, Oban, arq) are measured beside it with their own client
API, from one client subprocess (bench/peers/client.py) running PEER_TASKS concurrent asyncio tasks
for single jobs, each with a pooled connection of its own, and --batch-connections tasks sending
batches of 1,000 where the library has a batch API; no worker runs. The rate counted is the jobs the
peer's table (arq: its queue) holds at the end divided by the client's timed duration. Each side has
a one-second warm-up first, whose jobs are then removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import time
from typing import Any

from bench.harness import ROOT, Bench, cpu_seconds
from bench.peers import queues

LUA = ROOT / "bench" / "wrk" / "post.lua"
#: Concurrent single-job senders in a queue peer's client process (one pooled connection each).
PEER_TASKS = 16
#: The API's settings for the run: the key's request rate raised far above what two cores serve
#: (the module docstring says why), as a deployment expecting that load from one key would.
KEY_LIMITS = {"JOBYARD_RATE_LIMIT_PER_S": "1000000", "JOBYARD_RATE_LIMIT_BURST": "1000000"}


def _job(i: int) -> dict[str, Any]:
    return {"type": "unread_count", "payload": {"chat_id": f"c{i % 100}", "user_id": "u"}}


def _wrk(bench: Bench, base: str, path: str, body: Any, connections: int, seconds: float) -> dict[str, Any]:
    body_file = bench.workdir / f"body-{path.strip('/').replace('/', '-')}.json"
    body_file.write_text(json.dumps(body))
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_API_KEY": bench.api_key}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    api_procs = [p for proc in bench.procs if proc.name == "api" for p in proc.tree()]
    api_cpu = cpu_seconds(api_procs)
    servers = {p.pid: cpu_seconds([p]) for p in bench.server_processes()}
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(LUA),
            base + path,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = sum(cpu_seconds([p]) - servers.get(p.pid, 0.0) for p in bench.server_processes())
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if not requests:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    duration = float(requests.group(2)) * (0.001 if requests.group(3) == "ms" else 1.0)
    return {
        "requests": int(requests.group(1)),
        "duration_s": duration,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "latency_p50_ms": _ms(p50),
        "latency_p99_ms": _ms(p99),
        "client_cpu_s": round(wrk_cpu, 2),
        "client_cpu_share": round(wrk_cpu / duration, 3),
        "api_cpu_s": round(cpu_seconds(api_procs) - api_cpu, 2),
        "server_cpu_s": round(server_cpu, 2),
    }


def _ms(match: re.Match[str] | None) -> float | None:
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)


def _measure(
    bench: Bench, args: argparse.Namespace, path: str, body: Any, connections: int
) -> dict[str, Any]:
    bench.reset()
    _, base = bench.api(workers=args.api_workers, env=KEY_LIMITS)
    # A short warm-up (connections, caches, the first plans), then the timed run on an empty table.
    _wrk(bench, base, path, body, connections, 1)
    bench.reset()
    time.sleep(0.5)
    result = _wrk(bench, base, path, body, connections, args.enqueue_seconds)
    jobs = int(bench.scalar(f"SELECT count(*) FROM jobs WHERE {bench.fresh()}"))
    bench.stop_all()
    result["jobs_committed"] = jobs
    result["jobs_per_s"] = round(jobs / result["duration_s"], 1)
    # CPU per job of the API processes and of Postgres and Redis: the cost the machine's other load
    # disturbs least.
    result["api_cpu_ms_per_1000_jobs"] = round(result["api_cpu_s"] / max(jobs, 1) * 1e6, 1)
    result["server_cpu_ms_per_1000_jobs"] = round(result["server_cpu_s"] / max(jobs, 1) * 1e6, 1)
    result["connections"] = connections
    return result


def _peer_measure(bench: Bench, side: queues.Side, seconds: float, tasks: int, batch: int) -> dict[str, Any]:
    side.clear()
    side.client("enqueue", "1", str(tasks), str(batch))  # the warm-up
    side.clear()
    servers = queues.server_cpu(bench)
    out = side.client("enqueue", str(seconds), str(tasks), str(batch))
    server_cpu = queues.server_cpu(bench) - servers
    jobs = side.pending()
    return {
        "tasks": tasks,
        "batch": batch,
        "jobs_sent": out["sent"],
        "jobs_committed": jobs,
        "duration_s": out["seconds"],
        "jobs_per_s": round(jobs / max(out["seconds"], 1e-9), 1),
        "client_cpu_share": round(out["timed_cpu_s"] / max(out["seconds"], 1e-9), 3),
        "client_cpu_ms_per_1000_jobs": round(out["timed_cpu_s"] / max(jobs, 1) * 1e6, 1),
        "server_cpu_ms_per_1000_jobs": round(server_cpu / max(jobs, 1) * 1e6, 1),
    }


def queue_peer_enqueue(bench: Bench, name: str, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    side = queues.Side(bench, name)
    try:
        out: dict[str, Any] = {"version": side.version}
        out["single"] = _peer_measure(bench, side, args.enqueue_seconds, PEER_TASKS, 0)
        if side.peer.batch:
            out["batch"] = _peer_measure(bench, side, args.enqueue_seconds, args.batch_connections, 1000)
        return out
    finally:
        side.close()


def jobyard(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Jobyard's HTTP enqueue alone, single jobs and batches (the growth scenario's too)."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    single = _measure(bench, args, "/v1/jobs", _job(0), args.enqueue_connections)
    batch = _measure(
        bench, args, "/v1/jobs/batch", {"jobs": [_job(i) for i in range(1000)]}, args.batch_connections
    )
    return {"api_workers": args.api_workers, "single": single, "batch": batch}


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    out = jobyard(bench, args)
    for name in queues.NAMES:
        out[name] = queues.attempt(name, lambda name=name: queue_peer_enqueue(bench, name, args))
    for kind in ("single", "batch"):
        ran = {n: out[n][kind] for n in queues.POSTGRES_PEERS if kind in out[n]}
        if ran:
            fastest = max(ran, key=lambda n: ran[n]["jobs_per_s"])
            out[f"fastest_postgres_peer_{kind}"] = fastest
            out[f"ratio_vs_fastest_postgres_peer_{kind}"] = round(
                out[kind]["jobs_per_s"] / max(ran[fastest]["jobs_per_s"], 1e-9), 2
            )
    return out
