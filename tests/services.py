"""Real Postgres and Redis for the tests: the embedded servers, or the URLs given by
JOBYARD_TEST_DATABASE_URL / JOBYARD_TEST_REDIS_URL. Each test gets its own database, cloned from a
migrated template, and its own Redis key namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from core.launch import roles
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.db import dispose_engines
from core.platform.migrate import upgrade
from core.platform.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: The installed console script, as a user runs it.
JOBYARD = [str(Path(sys.executable).parent / "jobyard")]
TEMPLATE_DB = "jobyard_test_template"
#: The tests' data key (phone numbers at rest); a real farm's comes from its secret store.
TEST_DATA_KEY = "dGhlIGpvYnlhcmQgdGVzdHMnIGRhdGEga2V5ISEhISE="
#: PostgreSQL's own "non-durable settings" for the embedded server, which lives only as long as the
#: test session: no flush to disk at every commit and every CREATE DATABASE (a test's database cost
#: ~0.3 s to clone and drop with them, 0.05 s without). Only a crash of the machine would lose data, and
#: the session's data is never needed again; what a test reads and writes is unchanged.
NON_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll until ``condition()`` is truthy and return its value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


def with_db(url: str, database: str) -> str:
    """Swap the database name in a postgres URL (socket or TCP form)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)


def as_url(conninfo: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = info.get("user", "postgres")
    password = info.get("password", "")
    host = info.get("host", "")
    port = info.get("port")
    auth = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{info['dbname']}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{auth}{host}{':' + str(port) if port else ''}/{info['dbname']}"


@dataclass
class TestServices:
    __test__ = False  # a fixture's value, not a test class: test modules may import it
    admin_url: str  # a Postgres URL with the right to create databases
    redis_url: str
    _stops: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, home: Path) -> TestServices:
        stops: list[Callable[[], None]] = []
        db_url = os.environ.get("JOBYARD_TEST_DATABASE_URL")
        if not db_url:
            pg = EmbeddedPostgres(home / "pg", database="postgres")
            pg.start()
            db_url = pg.admin_url()
            stops.append(pg.stop)
            _non_durable(db_url)
        redis_url = os.environ.get("JOBYARD_TEST_REDIS_URL")
        if not redis_url:
            rd = EmbeddedRedis(home / "redis")
            redis_url = rd.start()
            stops.append(rd.stop)
        services = cls(admin_url=db_url, redis_url=redis_url, _stops=stops)
        services._make_template()
        return services

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def _make_template(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DB))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        settings = Settings(
            database_url=as_url(with_db(self.admin_url, TEMPLATE_DB)), redis_url=self.redis_url
        )
        upgrade(settings)
        dispose_engines()  # a template must have no open connections to be cloned

    def template_url(self) -> str:
        return as_url(with_db(self.admin_url, TEMPLATE_DB))

    @contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A fresh database for one test, migrated unless asked otherwise; dropped afterwards."""
        name = f"jobyard_t_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            if migrated:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                        sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
                    )
                )
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield as_url(with_db(self.admin_url, name))
        finally:
            dispose_engines()
            with self._admin() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        for stop in reversed(self._stops):
            stop()


def _non_durable(admin_url: str) -> None:
    """Apply NON_DURABLE to the embedded server (a server given by URL is left as it is)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name, value in NON_DURABLE.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")

    def applied() -> bool:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            return all(
                conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone() == (value,)
                for name, value in NON_DURABLE.items()
            )

    wait_for(applied, what="Postgres to reload its settings")


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a child process needs to join the test's farm."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JOBYARD_") and k not in {"DATABASE_URL", "REDIS_URL"}
    }
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[f.metadata["env"]] = ",".join(value) if isinstance(value, tuple) else str(value)
    env.update(JOBYARD_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def jobyard(settings: Settings, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """The `jobyard` command as a user runs it (the installed script, in a subprocess)."""
    return subprocess.run(
        [*JOBYARD, *args],
        env=settings_env(settings, **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Process:
    """A child process of the farm (worker, scheduler, API) that a test starts and stops."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._terminated = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM, once, without waiting (a second one may mean "exit now" to the process)."""
        if self.alive() and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def worker_argv(settings: Settings, processes: int = 1, threads: int = 4) -> list[str]:
    """The command `jobyard worker` runs."""
    return roles.worker_argv(processes, threads, settings.worker_queues, settings.worker_shutdown_timeout_s)


def scheduler_argv() -> list[str]:
    return [sys.executable, "-m", "workers.scheduler"]
