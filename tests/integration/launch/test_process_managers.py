"""What process managers do to a farm: start its processes in any order, and stop a whole process
group at once. Real `jobyard` commands against real Postgres and Redis."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from litestar.testing import TestClient

from core.cli import main
from core.launch.readiness import schema_problem
from core.platform.settings import Settings, get_settings
from tests.integration.conftest import Farm, JobWaiter
from tests.services import JOBYARD, TEST_DATA_KEY, Process, TestServices, settings_env, wait_for


def test_a_group_sigterm_lets_running_jobs_finish(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter
) -> None:
    """honcho, foreman and systemd signal the whole group: each Dramatiq worker process gets the
    SIGTERM from the runner and again from its master, which Dramatiq alone takes as "exit now"."""
    worker = farm.worker(processes=2, threads=2)
    job = api.post("/v1/jobs", json={"type": "test_sleep", "payload": {"seconds": 2}}).json()["id"]
    wait_job(job, "running")
    os.killpg(worker.proc.pid, signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    done = api.get(f"/v1/jobs/{job}").json()
    assert (done["status"], done["attempts"]) == ("succeeded", 1), done
    assert worker.log().count('"worker_unregistered"') == 2  # both processes stopped their own way


def test_a_worker_waits_for_the_migration_then_starts(services: TestServices, tmp_path: Path) -> None:
    with services.database(migrated=False) as url:
        settings = Settings(
            database_url=url,
            redis_url=services.redis_url,
            redis_namespace=f"jyw{os.getpid()}",
            data_key=TEST_DATA_KEY,
        )
        env = settings_env(settings)
        worker = Process([*JOBYARD, "worker", "--queues", "unread_count"], env, tmp_path / "worker.log")
        try:
            wait_for(lambda: "waiting: the database is at revision none" in worker.log(), timeout=30)
            assert worker.alive()
            migrate = Process([*JOBYARD, "migrate"], env, tmp_path / "migrate.log")
            migrate.proc.wait(60)
            assert migrate.stop() == 0, migrate.log()
            wait_for(lambda: '"worker_registered"' in worker.log(), timeout=60, what="the worker to start")
        finally:
            worker.stop()


def test_starting_without_services_fails_clearly(tmp_path: Path, services: TestServices) -> None:
    runner = CliRunner()
    env = {"JOBYARD_HOME": str(tmp_path), "JOBYARD_SERVICES_WAIT": "0.5"}
    result = runner.invoke(main, ["scheduler"], env=env)
    assert result.exit_code == 1
    assert "DATABASE_URL and REDIS_URL not set and no embedded services" in result.output
    assert "jobyard release" in result.output

    with services.database() as url:
        env |= {"DATABASE_URL": url, "REDIS_URL": f"unix://{tmp_path}/no-such.sock"}
        get_settings.cache_clear()  # the settings of the first command are cached in this process
        result = runner.invoke(main, ["api"], env=env)
    assert result.exit_code == 1
    assert "gave up after 0.5 s: Redis does not answer" in result.output


def test_a_queue_no_job_type_uses_is_refused_before_anything_starts() -> None:
    result = CliRunner().invoke(main, ["worker", "--queues", "unread_cuont"])
    assert result.exit_code == 2
    assert "no job type uses the queue unread_cuont" in result.output
    assert "unread_count" in result.output  # the known queues are listed
    # Excluding a queue nobody uses yet is fine (the Procfile excludes `scrape` before its type lands);
    # excluding every queue is not.
    everything = CliRunner().invoke(
        main,
        ["worker", "--queues", "unread_count", "--exclude-queues", "unread_count", "--exclude-queues", "x"],
    )
    assert everything.exit_code == 2
    assert "leaves no queue" in everything.output


def test_a_database_ahead_of_this_code_is_served_and_one_behind_is_waited_for(services: TestServices) -> None:
    with services.database() as url:
        assert schema_problem(url) is None
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_a_newer_release'")
        assert schema_problem(url) is None  # a rolling deploy: old pods keep running
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0001'")
        assert "the database is at revision 0001, this code needs" in (schema_problem(url) or "")
