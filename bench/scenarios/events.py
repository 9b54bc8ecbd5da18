"""What open events streams cost one API process, and how fast an event reaches them.

One `jobyard api` process (one uvicorn worker); ``--events-streams`` (1,000) streams of
``--events-tenants`` (10) tenants, each tenant's streams under one key, asking for `job.succeeded`.
The API process's RSS and CPU are measured over ``IDLE_S`` with no stream open, then over the same
time with every stream open and idle. Then ``--events-jobs`` `unread_count` jobs (one every
``JOB_INTERVAL_S``, the tenants in turns) run on a worker, and each job's event is timed from the
job's `finished_at` (set in the worker's transaction, just before its commit) to its arrival on
each of its tenant's streams: p50/p99 per stream, and of the last stream of each job ("all streams").

The client is one asyncio loop speaking HTTP/1.1 on raw sockets, so it costs little beside the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.harness import Bench, cpu_seconds, percentile
from core.access.keys import create_key
from core.platform.db import transaction

#: Seconds each idle measurement lasts.
IDLE_S = 10.0
#: Seconds between two jobs of the latency measurement.
JOB_INTERVAL_S = 0.2
#: How long the last job's events may take to arrive before the run gives up on them.
ARRIVAL_TIMEOUT_S = 30.0
BODY = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u"}}


class Streams:
    """The client side: open streams and when each job's event arrived on each."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.ready = 0
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, key: str) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            f"GET /v1/events?types=job.succeeded HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.writers.append(writer)
        self.tasks.append(asyncio.create_task(self._read(reader)))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"a stream was refused: {status!r}")
        while line := await reader.readline():
            if line.startswith(b"event: ready"):
                self.ready += 1
            elif line.startswith(b'data: {"type":"job.'):
                at = time.time()
                self.arrivals[json.loads(line[6:])["data"]["id"]].append(at)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        for task in self.tasks:
            task.cancel()


def _api_usage(procs: list[psutil.Process], seconds: float) -> tuple[float, float]:
    """The API's RSS (MiB) at the end of ``seconds``, and its CPU share of one core over them."""
    before = cpu_seconds(procs)
    time.sleep(seconds)
    used = cpu_seconds(procs) - before
    return sum(p.memory_info().rss for p in procs) / 2**20, used / seconds


async def _measure(bench: Bench, base: str, keys: list[str], args: argparse.Namespace) -> dict[str, Any]:
    api = [p for p in bench.procs if p.name == "api"][-1].tree()
    idle_mib, idle_cpu = await asyncio.to_thread(_api_usage, api, IDLE_S)
    streams = Streams(base)
    started = time.monotonic()
    for i in range(args.events_streams):
        await streams.open(keys[i % len(keys)])
    while streams.ready < args.events_streams:
        await asyncio.sleep(0.05)
    opened_s = time.monotonic() - started
    open_mib, open_cpu = await asyncio.to_thread(_api_usage, api, IDLE_S)

    import httpx  # the harness's own dependency, for the enqueues

    per_tenant = args.events_streams // len(keys)
    finished: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        ids = []
        for n in range(args.events_jobs):
            headers = {"Authorization": f"Bearer {keys[n % len(keys)]}"}
            r = await client.post("/v1/jobs", json=BODY, headers=headers)
            ids.append(r.json()["id"])
            await asyncio.sleep(JOB_INTERVAL_S)
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while time.monotonic() < deadline and any(len(streams.arrivals[i]) < per_tenant for i in ids):
            await asyncio.sleep(0.1)
        for n, job_id in enumerate(ids):
            job = (
                await client.get(
                    f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {keys[n % len(keys)]}"}
                )
            ).json()
            finished[job_id] = datetime.fromisoformat(job["finished_at"]).timestamp()
    streams.close()
    each = [(at - finished[i]) * 1000 for i in ids for at in streams.arrivals[i]]
    last = [(max(streams.arrivals[i]) - finished[i]) * 1000 for i in ids if streams.arrivals[i]]
    return {
        "streams": args.events_streams,
        "tenants": len(keys),
        "jobs": len(ids),
        "opened_s": opened_s,
        "idle": {"api_mib": idle_mib, "api_cpu_share": idle_cpu},
        "open": {"api_mib": open_mib, "api_cpu_share": open_cpu},
        "kib_per_stream": (open_mib - idle_mib) * 1024 / args.events_streams,
        "deliveries": len(each),
        "deliveries_expected": len(ids) * per_tenant,
        "each_p50_ms": percentile(each, 0.5),
        "each_p99_ms": percentile(each, 0.99),
        "all_p50_ms": percentile(last, 0.5),
        "all_p99_ms": percentile(last, 0.99),
    }


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    keys = []
    with transaction(bench.settings) as conn:
        for t in range(args.events_tenants):
            keys.append(
                create_key(conn, f"bench-events-{t}", ["jobs:write", "jobs:read"], tenant=f"ev-{t}")[1]
            )
    per_key = str(args.events_streams // args.events_tenants + 1)
    env = {
        "JOBYARD_EVENTS_STREAMS_PER_KEY": per_key,
        # The streams open as fast as the client can: the request rate limits are not measured here.
        "JOBYARD_RATE_LIMIT_PER_S": "100000",
        "JOBYARD_RATE_LIMIT_BURST": "100000",
        "JOBYARD_TENANT_RATE_LIMIT_PER_S": "100000",
    }
    _, base = bench.api(workers=1, env=env)
    bench.worker()
    return asyncio.run(_measure(bench, base, keys, args))


def markdown(r: dict[str, Any]) -> list[str]:
    """The report's section."""
    return [
        f"Events streams: {r['streams']:,} `GET /v1/events` streams of {r['tenants']} tenants on one API "
        f"process (opened in {r['opened_s']:.1f} s), then {r['jobs']} jobs, one every "
        f"{JOB_INTERVAL_S * 1000:.0f} ms.",
        "",
        "| figure | no stream | streams open, idle |",
        "| --- | ---: | ---: |",
        f"| API process RSS, MiB | {r['idle']['api_mib']:,.1f} | {r['open']['api_mib']:,.1f} |",
        f"| API process CPU, share of one core | {r['idle']['api_cpu_share']:.1%} "
        f"| {r['open']['api_cpu_share']:.1%} |",
        "",
        f"Memory per open stream: {r['kib_per_stream']:,.1f} KiB. Deliveries: {r['deliveries']:,} of "
        f"{r['deliveries_expected']:,}. Job commit (its `finished_at`) to the event on a stream: p50 "
        f"{r['each_p50_ms']:,.1f} ms, p99 {r['each_p99_ms']:,.1f} ms; on all of its tenant's streams: p50 "
        f"{r['all_p50_ms']:,.1f} ms, p99 {r['all_p99_ms']:,.1f} ms.",
    ]
