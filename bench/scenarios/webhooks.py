"""Webhooks: how soon a job's `job.succeeded` reaches a receiver, and what recording it costs a drain.

    python -m bench --only webhooks --out /tmp/hooks

- **Latency**: a farm (a worker of 2 processes, a scheduler) with an endpoint for `job.succeeded` on
  a receiver in this process (it answers 204 at once); `unread_count` jobs are enqueued at a steady
  rate (committed and published as the API does, without HTTP). Each delivery's latency is from the
  job's ``finished_at`` (set just before its success commits) to the receiver reading the request;
  the enqueue -> delivered time is given too. p50 / p99 over every job after a warm-up.
- **Drain cost**: the drain scenario's 20,000 queued `unread_count` jobs drained with no endpoint
  (the triggers ask and write nothing) and with one (an event and a delivery row a job, the scheduler
  sending them meanwhile), in turns over several rounds; the medians' ratio of the rate and of the CPU
  per job (workers, Postgres, Redis).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

from bench.harness import Bench, percentile, wait_until
from bench.scenarios import drain
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.events.endpoints import create_endpoint
from core.platform.crypto import use_data_key
from core.platform.db import transaction

#: The latency phase's first second is not counted: the senders open their connections then (its
#: worst figure is reported on its own).
WARMUP_S = 1.0


class Receiver:
    """Answers every POST with 204 and notes when each job's event arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                at = time.time()
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver._lock:
                    receiver.arrived.setdefault(body["data"]["id"], (at, body["data"]))

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a sender stopped with a kept-alive connection open: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self._lock:
            return len(self.arrived)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _forget_hooks(bench: Bench) -> None:
    with transaction(bench.settings) as conn:
        conn.execute(
            sa.text("TRUNCATE webhook_deliveries, webhook_endpoints, events, event_consumers CASCADE")
        )


def _hook(bench: Bench, url: str) -> None:
    settings = bench.settings.replace(webhook_allow_hosts=("127.0.0.1",))
    with transaction(settings) as conn:
        create_endpoint(
            conn,
            settings,
            tenant="default",
            url=url,
            events=["job.succeeded"],
            types=None,
            description="bench",
            created_by=None,
        )


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def latency(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    bench.reset()
    _forget_hooks(bench)
    receiver = Receiver()
    try:
        _hook(bench, receiver.url)
        bench.worker()
        bench.scheduler()
        broker = build_broker(bench.settings)
        n = int(rate * seconds)
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i in range(n):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            job = NewJob(
                type="unread_count",
                payload={"chat_id": f"c{i % 50}", "user_id": "u", "op": "increment", "by": 1},
            )
            at = time.time()
            (made,) = enqueue([job], broker, bench.settings)
            sent[str(made.job.id)] = at
        broker.client.close()
        wait_until(lambda: receiver.count() >= n, 120, "every delivery")
        delivery_ms, end_to_end_ms, warmup_ms = [], [], []
        first = min(sent.values())
        for job_id, (arrived, data) in receiver.arrived.items():
            latency_ms = (arrived - _ts(data["finished_at"])) * 1000
            if sent[job_id] - first < WARMUP_S:
                warmup_ms.append(latency_ms)
                continue
            delivery_ms.append(latency_ms)
            end_to_end_ms.append((arrived - sent[job_id]) * 1000)
        return {
            "jobs": len(delivery_ms),
            "warmup_max_ms": round(max(warmup_ms), 2),
            "rate_per_s": rate,
            "finished_to_delivered_p50_ms": round(percentile(delivery_ms, 0.5), 2),
            "finished_to_delivered_p99_ms": round(percentile(delivery_ms, 0.99), 2),
            "enqueue_to_delivered_p50_ms": round(percentile(end_to_end_ms, 0.5), 2),
            "enqueue_to_delivered_p99_ms": round(percentile(end_to_end_ms, 0.99), 2),
        }
    finally:
        bench.stop_all()
        receiver.close()
        _forget_hooks(bench)


def _drain(bench: Bench, n: int, hooked: bool) -> dict[str, Any]:
    _forget_hooks(bench)
    receiver = Receiver() if hooked else None
    try:
        if receiver is not None:
            _hook(bench, receiver.url)
            bench.scheduler()  # sends the deliveries meanwhile, as a farm does
        result = drain.jobyard(bench, n)  # stops every process at its end
        if receiver is not None:
            result["events"] = bench.scalar("SELECT count(*) FROM events")
        return result
    finally:
        bench.stop_all()
        if receiver is not None:
            receiver.close()
        _forget_hooks(bench)


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    use_data_key(bench.settings)  # the endpoint's secret is sealed
    bench.extra_env["JOBYARD_WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1"
    try:
        out: dict[str, Any] = {
            "latency": latency(bench, args.latency_rate, args.latency_seconds),
            "drain_jobs": args.drain_jobs,
            "rounds": [],
        }
        for i in range(args.webhooks_rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            one = {("hooked" if h else "plain"): _drain(bench, args.drain_jobs, h) for h in order}
            out["rounds"].append(one)
    finally:
        bench.extra_env.pop("JOBYARD_WEBHOOK_ALLOW_HOSTS", None)

    def median(side: str, key: str) -> float:
        return float(statistics.median(r[side][key] for r in out["rounds"]))

    for key in ("steady_per_s", "cpu_ms_per_1000_jobs"):
        out[f"plain_{key}"] = median("plain", key)
        out[f"hooked_{key}"] = median("hooked", key)
    out["rate_ratio"] = round(out["hooked_steady_per_s"] / out["plain_steady_per_s"], 3)
    out["cpu_ratio"] = round(out["hooked_cpu_ms_per_1000_jobs"] / out["plain_cpu_ms_per_1000_jobs"], 3)
    out["run_id"] = uuid.uuid4().hex[:8]
    return out


def markdown(r: dict[str, Any]) -> list[str]:
    lat = r["latency"]
    lines = [
        f"Webhooks: {lat['jobs']} `unread_count` jobs at {lat['rate_per_s']:.0f}/s, each one's "
        "`job.succeeded` delivered to a receiver on this machine; then drains of "
        f"{r['drain_jobs']:,} jobs without and with an endpoint, in turns, {len(r['rounds'])} rounds "
        "(medians).",
        "",
        "| figure | p50 | p99 |",
        "| --- | ---: | ---: |",
        f"| job finished -> delivery received, ms | {lat['finished_to_delivered_p50_ms']:.2f} "
        f"| {lat['finished_to_delivered_p99_ms']:.2f} |",
        f"| enqueue -> delivery received, ms | {lat['enqueue_to_delivered_p50_ms']:.2f} "
        f"| {lat['enqueue_to_delivered_p99_ms']:.2f} |",
        "",
        f"The first second's jobs are left out (the senders open their connections then); their worst "
        f"finish -> delivery was {lat['warmup_max_ms']:,.0f} ms.",
        "",
        "| drain | no endpoint | an endpoint for job.succeeded | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| jobs/s (10-90 %) | {r['plain_steady_per_s']:,.0f} | {r['hooked_steady_per_s']:,.0f} "
        f"| {r['rate_ratio']:.2f} |",
        f"| CPU ms per 1,000 jobs | {r['plain_cpu_ms_per_1000_jobs']:,.1f} "
        f"| {r['hooked_cpu_ms_per_1000_jobs']:,.1f} | {r['cpu_ratio']:.2f} |",
    ]
    return lines
