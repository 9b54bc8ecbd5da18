"""Fair share: tenant B's latency and tenant A's drain, each alone and then together.

    python -m bench --only fairness --out /tmp/fair

One farm (`jobyard api`, a worker of 2 processes x 8 threads, a scheduler) serves three phases a
round, in turns, so the machine's drift falls on all of them:

- **B alone**: tenant B sends one `unread_count` job every 100 ms (`POST /v1/jobs` over a kept-alive
  connection, B's own key); each job's enqueue -> start is from just before the request to its
  ``started_at`` (when the worker begins the claim), as the latency scenario measures it.
- **A alone**: tenant A's 50,000 `unread_count` jobs are committed, then published at once (one
  pipeline: the rows and messages the API's enqueue writes, without HTTP, so the API serves B
  alone and the figures are about the workers' share). The drain rate is taken between 10 % and
  90 % of A's jobs acknowledged, as the drain scenario takes it: A's waiting messages (its lanes) plus
  those fetched and not yet acknowledged (the ack sets), every 10 ms.
- **Together**: A's 50,000 published at once while B goes on sending one every 100 ms; B's figures
  are taken over its jobs sent while A's backlog was there. A alone and together swap places every
  other round.

Goals (issue 19): B's p99 together <= 3x its p99 alone, and A's rate together >= 0.8x its rate
alone, each side the median of its rounds. Once, after the rounds, B's jobs are sent with a key of
tenant A instead (the same farm without the turns between tenants: B's jobs queue behind A's
backlog), to show what the turns are worth. Between phases the farm finishes every job, the job
tables are emptied and Postgres checkpoints; the farm's processes keep running.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from bench.harness import Bench, percentile, wait_until
from bench.scenarios import history
from core.access.keys import create_key
from core.engine.broker import build_broker, publish_commands
from core.engine.jobs import NewJob, insert_jobs, publication
from core.engine.lanes import lane_key
from core.platform.db import transaction

A, B = "tenant-a", "tenant-b"
QUEUE = "unread_count"
#: B's pace: one job every 100 ms.
B_INTERVAL_S = 0.1
POLL_S = 0.01
#: B's jobs sent before its measured ones in each phase (connections, the worker's first batch).
WARMUP = 5


def _summary(ms: list[float]) -> dict[str, Any]:
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "jobs": 0}
    return {
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "jobs": len(ms),
    }


class Sender:
    """Tenant B: one job every 100 ms from a thread, until stopped (or ``count`` jobs are sent)."""

    def __init__(self, base: str, key: str) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.sent: list[tuple[str, float]] = []  # (job id, time just before the request)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def _send(self, i: int) -> None:
        body = json.dumps({"type": QUEUE, "payload": {"chat_id": f"b{i % 10}", "user_id": "ub"}})
        t = time.time()
        self.conn.request("POST", "/v1/jobs", body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"B's enqueue answered {response.status}: {data[:200]!r}")
        self.sent.append((json.loads(data)["id"], t))

    def _run(self, count: int | None) -> None:
        start = time.perf_counter()
        i = 0
        try:
            while not self.stop.is_set() and (count is None or i < count):
                delay = start + i * B_INTERVAL_S - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    break
                self._send(i)
                i += 1
        except BaseException as exc:  # reported by join()
            self.error = exc

    def start(self, count: int | None = None) -> Sender:
        self.thread = threading.Thread(target=self._run, args=(count,), name="tenant-b", daemon=True)
        self.thread.start()
        return self

    def join(self) -> list[tuple[str, float]]:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)
        self.conn.close()
        if self.error is not None:
            raise RuntimeError("tenant B's sender failed") from self.error
        return self.sent


def _started(bench: Bench, ids: list[str]) -> dict[str, float]:
    with transaction(bench.settings) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id::text, extract(epoch FROM started_at) FROM jobs "
                "WHERE id = ANY(CAST(:ids AS uuid[])) AND started_at IS NOT NULL"
            ),
            {"ids": ids},
        ).all()
    return {i: float(s) for i, s in rows}


def _b_latencies(bench: Bench, sent: list[tuple[str, float]], since: float, until: float) -> list[float]:
    """Enqueue -> start, ms, of B's jobs sent in [since, until] (all of them once they started)."""
    chosen = [(i, t) for i, t in sent if since <= t <= until]
    ids = [i for i, _ in chosen]

    def all_started() -> dict[str, float] | None:
        found = _started(bench, ids)
        return found if len(found) == len(ids) else None

    started: dict[str, float] = wait_until(all_started, 120, "B's jobs to start")
    return [(started[i] - t) * 1000 for i, t in chosen]


def _truncate(bench: Bench) -> None:
    """Empty the job tables (not ``workers``: the farm keeps running) once the farm is idle, and
    write what the last phase left in Postgres's buffers: the next phase must not pay for a
    checkpoint of 50,000 jobs' writes (as the growth scenario does after its fill)."""
    with transaction(bench.settings) as conn:
        conn.execute(sa.text("TRUNCATE jobs, job_attempts, job_history, unread_counters, chats CASCADE"))
    history.checkpoint(bench)


def _idle(bench: Bench) -> None:
    wait_until(
        lambda: bench.scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'") == 0,
        600,
        "the farm to finish every job",
        interval=0.05,
    )


class Backlog:
    """Tenant A's jobs: committed first, then published at once; watched until acknowledged."""

    def __init__(self, bench: Bench, n: int, tenant: str = A) -> None:
        self.bench, self.n, self.tenant = bench, n, tenant
        self.client = bench.redis()
        ns = bench.settings.redis_namespace
        self.lanes = [lane_key(ns, QUEUE, tenant, p) for p in range(10)]
        self.acks = f"{ns}:__acks__.*"
        jobs = [
            NewJob(type=QUEUE, payload={"chat_id": f"c{i % 100}", "user_id": "ua"}, tenant=tenant)
            for i in range(n)
        ]
        self.pubs = []
        for start in range(0, n, 5000):
            with transaction(bench.settings) as conn:
                self.pubs += [publication(e) for e in insert_jobs(conn, jobs[start : start + 5000])]
        self.published_at = 0.0

    def pending(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in self.lanes:
            pipe.llen(key)
        waiting = sum(int(n) for n in pipe.execute())
        held = sum(int(self.client.scard(k)) for k in self.client.scan_iter(match=self.acks))
        return waiting + held

    def publish(self) -> None:
        pipe = self.client.pipeline(transaction=True)  # one MULTI/EXEC: all 50,000 at once
        for command in publish_commands(self.bench.settings.redis_namespace, self.pubs):
            pipe.execute_command(*command)
        self.published_at = time.time()
        pipe.execute()

    def watch(self) -> dict[str, Any]:
        """Poll until A's jobs are all acknowledged; the rate between 10 % and 90 % done."""
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + 600
        while True:
            left = self.pending()
            samples.append((time.time(), self.n - left))
            if left == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tenant A's {self.n:,} jobs did not drain in 10 minutes ({left:,} left)")
            time.sleep(POLL_S)
        self.client.close()

        def at(fraction: float) -> tuple[float, int]:
            return next(s for s in samples if s[1] >= fraction * self.n)

        (t_lo, lo), (t_hi, hi), end = at(0.1), at(0.9), samples[-1][0]
        return {
            "steady_per_s": round((hi - lo) / max(t_hi - t_lo, 1e-9), 1),
            "whole_per_s": round(self.n / max(end - self.published_at, 1e-9), 1),
            "seconds": round(end - self.published_at, 3),
            "published_at": self.published_at,
            "drained_at": end,
        }


def b_alone(bench: Bench, base: str, key: str, count: int) -> dict[str, Any]:
    sent = Sender(base, key).start(count + WARMUP)
    wait_until(lambda: len(sent.sent) >= count + WARMUP or sent.error, 60 + count * B_INTERVAL_S, "B's jobs")
    jobs = sent.join()[WARMUP:]
    return _summary(_b_latencies(bench, jobs, 0, float("inf")))


def a_alone(bench: Bench, n: int) -> dict[str, Any]:
    backlog = Backlog(bench, n)
    backlog.publish()
    return backlog.watch()


def together(bench: Bench, base: str, key: str, n: int, tenant: str = A) -> dict[str, Any]:
    backlog = Backlog(bench, n, tenant)
    sender = Sender(base, key).start()
    wait_until(lambda: len(sender.sent) >= WARMUP or sender.error, 60, "B's first jobs")
    backlog.publish()
    drain = backlog.watch()
    sent = sender.join()
    during = _b_latencies(bench, sent, drain["published_at"], drain["drained_at"])
    return {"a": drain, "b": _summary(during)}


def _median(rounds: list[dict[str, Any]], get: Callable[[dict[str, Any]], float | None]) -> float | None:
    values = [v for v in (get(r) for r in rounds) if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(rounds: list[dict[str, Any]], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The medians of the rounds, their ratios and the goals (B's p99 <= 3x, A's rate >= 0.8x)."""
    out: dict[str, Any] = {"rounds": rounds}
    for side, get in (
        ("b_alone_p50_ms", lambda r: r["b_alone"]["p50_ms"]),
        ("b_alone_p99_ms", lambda r: r["b_alone"]["p99_ms"]),
        ("b_together_p50_ms", lambda r: r["together"]["b"]["p50_ms"]),
        ("b_together_p99_ms", lambda r: r["together"]["b"]["p99_ms"]),
        ("a_alone_per_s", lambda r: r["a_alone"]["steady_per_s"]),
        ("a_together_per_s", lambda r: r["together"]["a"]["steady_per_s"]),
    ):
        out[side] = _median(rounds, get)
    alone, both = out["b_alone_p99_ms"], out["b_together_p99_ms"]
    out["b_p99_ratio"] = round(both / alone, 2) if alone and both is not None else None
    out["a_rate_ratio"] = (
        round(out["a_together_per_s"] / out["a_alone_per_s"], 2) if out["a_alone_per_s"] else None
    )
    out["goal_b_p99_within_3x"] = out["b_p99_ratio"] is not None and out["b_p99_ratio"] <= 3
    out["goal_a_rate_at_least_0_8x"] = out["a_rate_ratio"] is not None and out["a_rate_ratio"] >= 0.8
    out["same_tenant"] = baseline
    return out


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    with transaction(bench.settings) as conn:
        _, key_a = create_key(conn, "bench-a", ["jobs:write", "jobs:read"], tenant=A)
        _, key_b = create_key(conn, "bench-b", ["jobs:write", "jobs:read"], tenant=B)
    _, base = bench.api(workers=1)
    bench.worker()
    bench.scheduler()
    build_broker(bench.settings).client.close()  # the settings reach Redis: fail here, not mid-round
    n, count = args.fairness_jobs, args.fairness_b_jobs
    rounds = []
    for i in range(args.fairness_rounds):
        print(f"      round {i + 1}/{args.fairness_rounds}", flush=True)
        r: dict[str, Any] = {}
        phases = [
            ("b_alone", lambda: b_alone(bench, base, key_b, count)),
            ("a_alone", lambda: a_alone(bench, n)),
            ("together", lambda: together(bench, base, key_b, n)),
        ]
        if i % 2:  # A alone and together swap places every other round: neither always goes first
            phases[1], phases[2] = phases[2], phases[1]
        for phase, measure in phases:
            r[phase] = measure()
            _idle(bench)
            _truncate(bench)
        print(f"      {r}", flush=True)
        rounds.append(r)
    baseline = None
    if args.fairness_baseline:
        # B's jobs in A's tenant: what the same farm does for B without turns between tenants.
        baseline = together(bench, base, key_a, n)
        _idle(bench)
        _truncate(bench)
    bench.stop_all()
    return {"jobs": n, "b_interval_ms": B_INTERVAL_S * 1000, **summarize(rounds, baseline)}


def markdown(r: dict[str, Any]) -> list[str]:
    """The report's section: the medians and ratios, then every round."""

    def f(v: Any, digits: int = 1) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    lines = [
        f"Fair share: tenant A's {r['jobs']:,} `unread_count` jobs published at once, tenant B's one every "
        f"{r['b_interval_ms']:.0f} ms; each side the median of {len(r['rounds'])} rounds, the phases taking "
        "turns.",
        "",
        "| figure | alone | together | ratio | goal | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| B enqueue -> start p50, ms | {f(r['b_alone_p50_ms'], 2)} | {f(r['b_together_p50_ms'], 2)} "
        f"| | | |",
        f"| B enqueue -> start p99, ms | {f(r['b_alone_p99_ms'], 2)} | {f(r['b_together_p99_ms'], 2)} "
        f"| {f(r['b_p99_ratio'], 2)} | <= 3x | {'yes' if r['goal_b_p99_within_3x'] else '**no**'} |",
        f"| A drain, jobs/s (10-90 %) | {f(r['a_alone_per_s'])} | {f(r['a_together_per_s'])} "
        f"| {f(r['a_rate_ratio'], 2)} | >= 0.8x | {'yes' if r['goal_a_rate_at_least_0_8x'] else '**no**'} |",
        "",
        "| round | B alone p50 / p99 / max ms (jobs) | A alone jobs/s (whole run) "
        "| together: B p50 / p99 / max ms (jobs) | together: A jobs/s (whole run) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, x in enumerate(r["rounds"], 1):
        ba, aa, tb, ta = x["b_alone"], x["a_alone"], x["together"]["b"], x["together"]["a"]
        lines.append(
            f"| {i} | {f(ba['p50_ms'], 2)} / {f(ba['p99_ms'], 2)} / {f(ba['max_ms'], 2)} ({ba['jobs']}) "
            f"| {f(aa['steady_per_s'])} ({f(aa['whole_per_s'])}) "
            f"| {f(tb['p50_ms'], 2)} / {f(tb['p99_ms'], 2)} / {f(tb['max_ms'], 2)} ({tb['jobs']}) "
            f"| {f(ta['steady_per_s'])} ({f(ta['whole_per_s'])}) |"
        )
    same = r.get("same_tenant")
    if same:
        b, a = same["b"], same["a"]
        lines += [
            "",
            f"Without turns between tenants (B's jobs sent with a key of tenant A, once): B p50 / p99 / max "
            f"{f(b['p50_ms'], 2)} / {f(b['p99_ms'], 2)} / {f(b['max_ms'], 2)} ms over {b['jobs']} jobs; "
            f"A {f(a['steady_per_s'])} jobs/s.",
        ]
    return lines
