"""Integration fixtures: real Postgres and Redis, real worker and scheduler processes."""

from __future__ import annotations

import contextlib
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa
from alembic import command
from litestar.testing import TestClient
from psycopg import sql

from control_api import stackdump
from core.access.keys import SCOPES, create_key
from core.engine.broker import build_broker, redis_client
from core.engine.lanes import waiting_counts
from core.launch.roles import queues_except
from core.platform.crypto import use_data_key
from core.platform.db import dispose_engines, get_engine, transaction
from core.platform.migrate import alembic_config, upgrade
from core.platform.settings import Settings
from core.platform.tables import workers
from tests.fakes.site import FakeSite
from tests.fakes.whatsapp import PHONE_NUMBER_ID, TOKEN, VERSION, FakeWhatsApp
from tests.services import (
    JOBYARD,
    TEST_DATA_KEY,
    Process,
    TestServices,
    as_url,
    scheduler_argv,
    settings_env,
    wait_for,
    with_db,
    worker_argv,
)


@contextmanager
def database_at(services: TestServices, settings: Settings, revision: str | None) -> Iterator[Settings]:
    """``settings`` pointing at a new database migrated up to ``revision`` only (for a test of a
    later migration; None: left empty), dropped afterwards."""
    name = f"jobyard_m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(services.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrated = settings.replace(database_url=as_url(with_db(services.admin_url, name)))
    try:
        if revision is not None:
            upgrade(migrated, revision)
        yield migrated
    finally:
        dispose_engines()
        with psycopg.connect(services.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def downgrade(settings: Settings, revision: str) -> None:
    """Migrate ``settings``' database down to ``revision`` (for a test of a migration's downgrade)."""
    config = alembic_config()
    with get_engine(settings).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may come from the Hugging Face Hub: the farm processes a test starts inherit this."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def settings(services: TestServices) -> Iterator[Settings]:
    """Settings pointing at a fresh database and a Redis namespace of this test's own."""
    with services.database() as url:
        base = Settings(job_modules=("tests.jobtypes",))
        test_settings = Settings(
            database_url=url,
            redis_url=services.redis_url,
            redis_namespace=f"jyt{uuid.uuid4().hex[:8]}",
            job_modules=("tests.jobtypes",),
            republish_after_s=1.0,
            scheduler_interval_s=0.05,
            worker_heartbeat_s=1.0,
            worker_shutdown_timeout_s=10.0,
            data_key=TEST_DATA_KEY,
            # Like production's light worker group: a browser and a model start only in the tests
            # that ask for the scrape or embeddings queue.
            worker_queues=queues_except(base, ("scrape", "embeddings")),
        )
        use_data_key(test_settings)  # what every farm process does at start
        yield test_settings


@pytest.fixture
def redis_conn(settings: Settings) -> Iterator[redis.Redis]:
    client = redis_client(settings, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def broker(settings: Settings) -> Iterator[Any]:
    b = build_broker(settings)
    yield b
    b.client.close()


def count_rows(settings: Settings, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    """Rows of ``table`` matching ``where``, read in a transaction of its own."""
    with transaction(settings) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def waiting(client: redis.Redis, settings: Settings, queue: str) -> int:
    """Messages of ``queue`` waiting in Redis: in its lanes and Dramatiq's list (core/engine/lanes.py)."""
    return waiting_counts(client, settings.redis_namespace, [queue])[queue]


def make_key(settings: Settings, *scopes: str, name: str = "test", tenant: str = "default") -> str:
    with transaction(settings) as conn:
        _, secret = create_key(conn, name, scopes or SCOPES, tenant=tenant)
    return secret


@pytest.fixture
def admin_key(settings: Settings) -> str:
    return make_key(settings, *SCOPES, name="admin")


@pytest.fixture
def api(settings: Settings, admin_key: str) -> Iterator[TestClient[Any]]:
    """The app in-process, against the real services, authenticated with an all-scopes key."""
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        yield client


@pytest.fixture
def public(settings: Settings) -> Iterator[TestClient[Any]]:
    """The API as Meta calls it: no API key."""
    from control_api.app import create_app

    with TestClient(create_app(settings, configure_logs=False)) as client:
        yield client


def sending_to(settings: Settings, whatsapp: FakeWhatsApp, app_secret: str, **more: Any) -> Settings:
    """``settings`` sending through the farm's number on the fake Cloud API, its webhooks signed with
    ``app_secret``; quiet hours off (the tests run at any hour of the day)."""
    values: dict[str, Any] = {
        "whatsapp_api_base_url": whatsapp.url,
        "whatsapp_api_version": VERSION,
        "whatsapp_token": TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        "whatsapp_app_secret": app_secret,
        "quiet_hours": "off",
    }
    return settings.replace(**(values | more))


class Farm:
    """Starts worker, scheduler and API processes for a test and stops them all at the end."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.processes: list[Process] = []
        self.redis = redis_client(settings, socket_timeout=5)
        #: More environment for every process it starts (e.g. a PYTHONPATH holding a deployment's modules).
        self.env: dict[str, str] = {}

    def _start(self, name: str, argv: list[str], **env: str) -> Process:
        path = self.logs / f"{name}-{len(self.processes)}.log"
        proc = Process(argv, settings_env(self.settings, **{**self.env, **env}), path)
        self.processes.append(proc)
        return proc

    def worker(self, processes: int = 1, threads: int = 4, *, cli: Sequence[str] = ()) -> Process:
        """Start a worker and wait until each of its processes registered in Postgres.

        With ``cli``, through the `jobyard worker` command with those options (e.g. ``--queues``);
        otherwise the Dramatiq command it runs, for the settings' queues.
        """
        launched = datetime.now(UTC) + timedelta(seconds=self.settings.clock_offset_s)
        argv = worker_argv(self.settings, processes, threads)
        if cli:
            argv = [*JOBYARD, "worker", *cli, "--processes", str(processes), "--threads", str(threads)]
        proc = self._start("worker", argv)

        def registered() -> bool:
            with transaction(self.settings) as conn:
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(workers).where(workers.c.started_at >= launched)
                ).scalar_one()
            return count >= processes

        def booted() -> bool:
            if registered():
                return True  # it may already be dying on a poison job: that is the test's business
            assert proc.alive(), f"the worker exited before registering:\n{proc.log()}"
            return False

        # Generous: a loaded 2-core machine can take a while to boot Python processes.
        wait_for(booted, timeout=90, interval=0.1, what="worker registration")
        return proc

    def scheduler(self) -> Process:
        proc = self._start("scheduler", scheduler_argv())
        wait_for(lambda: "scheduler_started" in proc.log() or not proc.alive(), timeout=30, what="scheduler")
        assert proc.alive(), proc.log()
        return proc

    def api(self) -> tuple[Process, str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = self._start("api", [sys.executable, "-m", "control_api", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.alive(), proc.log()
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, what="API")
        return proc, base

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()  # all at once: they stop side by side, not one after another
        for proc in reversed(self.processes):
            proc.stop()
        self.redis.close()

    def discard(self) -> None:
        """SIGKILL every process: the end of a test, whose checks are over. A graceful stop costs a
        worker ~3 s of Dramatiq's one-second polls, in every test; the tests of the graceful stop
        itself call stop() or a process's stop() (tests/integration/engine/test_recovery.py)."""
        for proc in self.processes:
            proc.kill()
            proc.stop()  # closes its log
        self.redis.close()


#: The last lines of each farm process's log that a failed test's report shows.
FARM_LOG_TAIL = 60


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran farm processes shows the end of each one's log in its report: in CI
    the run's files are gone with the machine, and an API that stopped answering says why only there."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    farm = getattr(item, "funcargs", {}).get("farm")
    if not report.failed or not isinstance(farm, Farm):
        return
    for proc in farm.processes:
        lines = proc.log().splitlines()[-FARM_LOG_TAIL:]
        report.sections.append((f"farm log {proc.log_path.name} ({report.when})", "\n".join(lines)))
        if "control_api" in proc.argv and proc.alive():
            report.sections.append((f"where {proc.log_path.name} waits ({report.when})", _stacks(proc)))


def _stacks(proc: Process) -> str:
    """An API's thread and asyncio task stacks (control_api/stackdump.py), asked for by signal."""
    before = len(proc.log())
    proc.proc.send_signal(stackdump.THREADS_SIGNAL)
    proc.proc.send_signal(stackdump.TASKS_SIGNAL)
    # An event loop that does not run never logs its tasks: the thread stacks show why.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: "asyncio_tasks" in proc.log()[before:], timeout=5, what="the stack dump")
    return proc.log()[before:]


@pytest.fixture
def farm(settings: Settings, tmp_path: Path) -> Iterator[Farm]:
    f = Farm(settings, tmp_path)
    yield f
    f.discard()


@pytest.fixture
def site() -> Iterator[FakeSite]:
    """The local website scrape tests read (tests/fakes/site.py)."""
    s = FakeSite()
    yield s
    s.close()


@pytest.fixture
def whatsapp() -> Iterator[FakeWhatsApp]:
    """A fake WhatsApp Cloud API; a test points its settings at ``whatsapp.url``."""
    fake = FakeWhatsApp()
    yield fake
    fake.close()


JobWaiter = Callable[..., dict[str, Any]]


@pytest.fixture
def wait_job(api: TestClient[Any]) -> JobWaiter:
    """Wait until a job reaches one of ``statuses`` and return it."""

    def wait(job_id: str, *statuses: str, timeout: float = 15.0) -> dict[str, Any]:
        wanted = statuses or ("succeeded",)

        def check() -> dict[str, Any] | None:
            job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
            return job if job["status"] in wanted else None

        return wait_for(check, timeout=timeout, what=f"job {job_id} to be {wanted}")  # type: ignore[no-any-return]

    return wait
