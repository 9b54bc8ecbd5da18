"""`jobyard up` as a user runs it: a fresh home, embedded services, the printed key, then HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import JOBYARD, ROOT, wait_for


@dataclass
class Farm:
    home: Path
    base: str
    key: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=10
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JOBYARD, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOBYARD_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(JOBYARD_HOME=str(home), JOBYARD_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    return env


def start_up(home: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = home.parent / f"up-{home.name}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*JOBYARD, "up", "--port", str(port)],
            env=up_env(home),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        return "Jobyard is up." in log.read_text()

    wait_for(ready, timeout=120, interval=0.2, what="jobyard up")
    return proc, log


def stop_up(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    return proc.wait(90)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    home = tmp_path_factory.mktemp("e2e") / "home"
    port = free_port()
    proc, log = start_up(home, port)
    key = (home / "admin.key").read_text().strip()
    yield Farm(home, f"http://127.0.0.1:{port}", key, proc, log, up_env(home))
    if proc.poll() is None:
        stop_up(proc)


def test_first_start_prints_the_admin_key_once_and_saves_it_privately(farm: Farm) -> None:
    assert farm.key.startswith("jy_")
    assert farm.key in farm.log.read_text()
    assert stat.S_IMODE((farm.home / "admin.key").stat().st_mode) == 0o600


def test_an_enqueued_job_succeeds_and_updates_the_count(farm: Farm) -> None:
    with farm.client() as client:
        r = client.post(
            "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "c1", "user_id": "e2e"}}
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = wait_for(
            lambda: (j := client.get(f"/v1/jobs/{job_id}").json())["status"] == "succeeded" and j,
            timeout=10,
            what="job to succeed",
        )
        assert job["result"] == {"chat_id": "c1", "unread": 1}
        assert client.get("/v1/unread", params={"user_id": "e2e"}).json()["total"] == 1
        assert client.get("/readyz").json()["status"] == "ready"


def test_cli_keys_and_jobs_work_beside_a_running_farm(farm: Farm) -> None:
    created = farm.cli("keys", "create", "reader", "--scope", "jobs:read")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    with farm.client(secret) as client:
        assert client.get("/v1/jobs").status_code == 200
        assert client.post("/v1/jobs", json={}).status_code == 403

    listed = farm.cli("keys", "list")
    assert "reader" in listed.stdout and "admin" in listed.stdout
    assert secret not in listed.stdout  # only the prefix is ever shown again

    enq = farm.cli("jobs", "enqueue", "unread_count", '{"chat_id": "cli", "user_id": "cli", "by": 4}')
    assert enq.returncode == 0, enq.stderr
    job_id = json.loads(enq.stdout)["id"]
    shown = farm.cli("jobs", "show", job_id, "--wait", "10")
    assert json.loads(shown.stdout)["status"] == "succeeded"

    bad = farm.cli("jobs", "enqueue", "unread_count", '{"chat_id": 1}')
    assert bad.returncode != 0
    assert "payload.user_id" in bad.stderr

    revoked = farm.cli("keys", "revoke", secret[:10])
    assert revoked.returncode == 0, revoked.stderr
    with farm.client(secret) as client:
        wait_for(lambda: client.get("/v1/jobs").status_code == 401, timeout=5, what="revoked key refused")


def test_ctrl_c_stops_everything_and_a_restart_keeps_the_data(farm: Farm) -> None:
    with farm.client() as client:
        job_id = client.post(
            "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "keep", "user_id": "keep"}}
        ).json()["id"]
        wait_for(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded", what="job")

    assert stop_up(farm.proc) == 0
    log = farm.log.read_text()
    for child in ("api", "worker", "scheduler"):
        assert f'"child": "{child}", "exit_code"' in log.replace("'", '"'), child
    assert not (farm.home / "postgres" / "postmaster.pid").exists()
    assert not (farm.home / "services.json").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{farm.base}/healthz", timeout=2)

    port = free_port()
    proc, log_path = start_up(farm.home, port)
    try:
        restart_log = log_path.read_text()
        assert farm.key not in restart_log  # the key is shown only on the first start
        assert "admin key:  in" in restart_log
        with farm.client() as client:
            client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
            assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    finally:
        assert stop_up(proc, signal.SIGTERM) == 0
