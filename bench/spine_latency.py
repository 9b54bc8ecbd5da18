"""Time from `POST /v1/jobs` to the job showing `succeeded`, one job at a time, on an idle farm.

    python -m bench.spine_latency [--jobs 50]

Starts `jobyard up` on embedded services in a temporary home, so nothing else is needed. Reports the
latency a client sees (POST, then GET until succeeded, polling every 2 ms) and the server-side time
from the job's created_at to its finished_at.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-")) / "home"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOBYARD_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(JOBYARD_HOME=str(home), JOBYARD_LOG_LEVEL="WARNING", JOBYARD_LOG_FORMAT="json")
    jobyard = str(Path(sys.executable).parent / "jobyard")
    log = home.parent / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [jobyard, "up", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while "Jobyard is up." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"jobyard up did not start:\n{log.read_text()}")
            time.sleep(0.2)
        key = (home / "admin.key").read_text().strip()
        client_ms, server_ms = [], []
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            for i in range(args.jobs + 5):
                t0 = time.perf_counter()
                job = c.post(
                    "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "b", "user_id": "b"}}
                )
                job_id = job.json()["id"]
                while (j := c.get(f"/v1/jobs/{job_id}").json())["status"] != "succeeded":
                    time.sleep(0.002)
                elapsed = (time.perf_counter() - t0) * 1000
                if i >= 5:  # the first few warm up connections and caches
                    client_ms.append(elapsed)
                    created = datetime.fromisoformat(j["created_at"])
                    finished = datetime.fromisoformat(j["finished_at"])
                    server_ms.append((finished - created).total_seconds() * 1000)
                time.sleep(0.05)  # idle between jobs, as on a quiet farm
        print(f"jobs: {len(client_ms)}")
        for name, values in (
            ("POST -> GET shows succeeded", client_ms),
            ("created_at -> finished_at", server_ms),
        ):
            print(
                f"{name:<30} p50 {statistics.median(values):7.1f} ms   p95 {_percentile(values, 0.95):7.1f} ms"
                f"   max {max(values):7.1f} ms"
            )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


if __name__ == "__main__":
    main()
