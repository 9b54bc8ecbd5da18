"""A valid client's enqueue latency while a flood of random API keys hits the API.

`jobyard api --workers N` as production runs it. A valid client (its own address, 127.0.0.2) sends
`POST /v1/jobs` one after another over a kept-alive connection throughout; in each of
``--bad-keys-rounds`` rounds the API is first left idle for a few seconds, then wrk sends
``--bad-keys-requests`` (5,000) requests with random keys of the right shape from 64 connections
(from 127.0.0.1). Idle and flood windows alternate, so a machine whose load drifts (others' work)
weighs on both alike. Reported: the valid client's p50/p99 in the idle windows and in the flood
windows, their ratio (goal: p99 within 3x), and what the floods got back.

Two runs: with the defaults (the flooding address is refused with 429 once it spent its budget of
failed authentications), and with that limit off (JOBYARD_AUTH_FAILURES_PER_S=0), where every flood
request is a first-sight key that Postgres must look up: the lookups' own bounded lane
(JOBYARD_KEY_LOOKUP_CONCURRENCY) is then what protects the valid client.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from bench.harness import ROOT, Bench, cpu_seconds, percentile

LUA = ROOT / "bench" / "wrk" / "bad_keys.lua"
#: The valid client's own address: the flood's is 127.0.0.1 (any 127.x address is this host).
CLIENT_ADDRESS = "127.0.0.2"
#: Idle time before each flood round.
IDLE_S = 3.0
BODY = {"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "u"}}


class ValidClient(threading.Thread):
    """Enqueues one job after another and records (send time, latency ms) for each."""

    def __init__(self, base: str, api_key: str) -> None:
        super().__init__(name="valid-client", daemon=True)
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(
            url.hostname or "127.0.0.1", url.port, timeout=30, source_address=(CLIENT_ADDRESS, 0)
        )
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.body = json.dumps(BODY)
        self.samples: list[tuple[float, float]] = []
        self.failures: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            self.conn.request("POST", "/v1/jobs", self.body, self.headers)
            response = self.conn.getresponse()
            response.read()
            took = (time.monotonic() - sent) * 1000
            if response.status == 201:
                self.samples.append((sent, took))
            else:
                self.failures[response.status] = self.failures.get(response.status, 0) + 1
        self.conn.close()

    def between(self, windows: list[tuple[float, float]]) -> list[float]:
        return [ms for sent, ms in self.samples if any(a <= sent < b for a, b in windows)]


def _flood(bench: Bench, base: str, requests: int) -> tuple[float, float, dict[str, int]]:
    """One round of wrk; (start, end, answers by status). Ends when wrk saw ``requests`` answers."""
    body_file = bench.workdir / "bad-keys-body.json"
    body_file.write_text(json.dumps(BODY))
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_REQUESTS": str(requests)}
    argv = ["wrk", "-t1", "-c64", "-d120s", "-s", str(LUA), base + "/v1/jobs"]
    started = time.monotonic()
    wrk = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert wrk.stdout is not None
    for line in wrk.stdout:
        if line.strip() == "bench-flood-done":
            break
    ended = time.monotonic()
    wrk.send_signal(signal.SIGINT)  # wrk stops and prints its summary, then done()'s line
    rest = wrk.stdout.read()
    wrk.wait(30)
    found = re.search(r"statuses 401=(\d+) 429=(\d+) 503=(\d+) other=(\d+)", rest)
    counts = dict(zip(("401", "429", "503", "other"), map(int, found.groups()), strict=True)) if found else {}
    return started, ended, counts


def _summary(ms: list[float]) -> dict[str, Any]:
    return {
        "requests": len(ms),
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
    }


def _run(bench: Bench, args: argparse.Namespace, **env: str) -> dict[str, Any]:
    bench.reset()
    api, base = bench.api(workers=args.api_workers, env=env)
    api_procs = api.tree()  # uvicorn's master and its workers, all up once /healthz answered
    client = ValidClient(base, bench.api_key)
    client.start()
    time.sleep(1.0)  # warm-up: connections, caches
    idle_windows, windows = [], []
    answers = {"401": 0, "429": 0, "503": 0, "other": 0}
    cpu_before = cpu_seconds(api_procs)
    for _ in range(args.bad_keys_rounds):
        idle_from = time.monotonic()
        time.sleep(IDLE_S)
        idle_windows.append((idle_from, time.monotonic()))
        start, end, counts = _flood(bench, base, args.bad_keys_requests)
        windows.append((start, end))
        for k, v in counts.items():
            answers[k] += v
        time.sleep(0.5)  # the flood's last answers drain
    client.stop.set()
    client.join(30)
    api_cpu = cpu_seconds(api_procs) - cpu_before
    flood_s = sum(b - a for a, b in windows)
    idle = _summary(client.between(idle_windows))
    flooded = _summary(client.between(windows))
    bench.stop_all()
    return {
        "idle": idle,
        "flood": flooded,
        "p99_ratio": round(flooded["p99_ms"] / idle["p99_ms"], 2),
        "flood_requests_per_s": round(sum(answers.values()) / flood_s, 1),
        "flood_answers": answers,
        "api_cpu_s_all_rounds": round(api_cpu, 2),
        "valid_client_failures": client.failures,
    }


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    return {
        "api_workers": args.api_workers,
        "rounds": args.bad_keys_rounds,
        "requests_per_round": args.bad_keys_requests,
        "limited": _run(bench, args),
        "no_address_limit": _run(bench, args, JOBYARD_AUTH_FAILURES_PER_S="0"),
    }
