"""What every scenario needs: Postgres and Redis, Jobyard's own processes started like production,
an API key, clean tables between scenarios, and small statistics helpers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis
import sqlalchemy as sa

from core.access.keys import SCOPES, create_key
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.db import autocommit, dispose_engines, transaction
from core.platform.settings import Settings
from tests.services import wait_for

ROOT = Path(__file__).resolve().parent.parent
JOBYARD = str(Path(sys.executable).parent / "jobyard")
#: Redis databases of the peers, so their keys never mix with Jobyard's (db 0).
DRAMATIQ_DB, CELERY_DB = 1, 2
#: arq's database, and where the queue peers' no-ops put their start delays (bench/peers/queues.py).
ARQ_DB, STAMPS_DB = 3, 4
#: The same threads for every Dramatiq-based worker (Jobyard's default is 8).
WORKER_THREADS = 8
WORKER_PROCESSES = 2


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    return wait_for(condition, timeout=timeout, interval=interval, what=what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(redis_url: str, db: int) -> str:
    """The same Redis server, another database number (unix:// and redis:// forms)."""
    sep = "&" if "?" in redis_url else "?"
    if redis_url.startswith("unix://"):
        return f"{redis_url}{sep}db={db}"
    base = redis_url.rstrip("/")
    head, _, tail = base.rpartition("/")
    return f"{head}/{db}" if tail.isdigit() and head.count("/") >= 2 else f"{base}/{db}"


@dataclass
class Proc:
    """A process the harness started (in its own session, so the whole group can be stopped)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.popen.pid)
        return [root, *root.children(recursive=True)]


@dataclass
class Bench:
    """The services under test and the processes started on them; one per harness run."""

    workdir: Path
    settings: Settings
    api_key: str = ""
    log_level: str = "INFO"
    procs: list[Proc] = field(default_factory=list)
    #: Set by the growth scenario: jobs created before it are history the other scenarios keep (their
    #: counts and reset touch only the jobs created since).
    since: datetime | None = None
    #: Added to the environment of every process started (the growth scenario's retention settings).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The queue peers whose databases this run has made (bench/peers/queues.py).
    peer_databases: set[str] = field(default_factory=set)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, database_url: str | None, redis_url: str | None, log_level: str) -> Bench:
        workdir = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
        stops: list[Callable[[], None]] = []
        if not database_url:
            pg = EmbeddedPostgres(workdir / "pg")
            database_url = pg.start()
            stops.append(pg.stop)
        if not redis_url:
            rd = EmbeddedRedis(workdir / "redis")
            redis_url = rd.start()
            stops.append(rd.stop)
        from core.platform.crypto import generate_data_key

        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            redis_namespace="jobyard-bench",
            data_key=generate_data_key(),
        )
        from core.catalog import load_job_types
        from core.platform.migrate import upgrade

        upgrade(settings)
        load_job_types(settings)
        bench = cls(workdir=workdir, settings=settings, log_level=log_level, _stops=stops)
        with transaction(settings) as conn:
            _, bench.api_key = create_key(conn, "bench", SCOPES)
        return bench

    # -- state between scenarios -----------------------------------------------------------------

    def fresh(self) -> str:
        """A condition on jobs (or job_history): the scenario's own jobs, not the history a growth run
        keeps."""
        return "TRUE" if self.since is None else f"created_at >= '{self.since.isoformat()}'::timestamptz"

    def reset(self) -> None:
        """Empty the job tables (but the kept history, see ``since``) and every Redis database the
        harness uses. A scheduler may have moved a scenario's finished jobs into job_history: they go
        from there too."""
        with transaction(self.settings) as conn:
            if self.since is None:
                conn.execute(
                    sa.text(
                        "TRUNCATE jobs, job_attempts, job_history, unread_counters, chats, workers CASCADE"
                    )
                )
            else:
                conn.execute(sa.text(f"DELETE FROM jobs WHERE {self.fresh()}"))  # attempts by cascade
                conn.execute(sa.text(f"DELETE FROM job_history WHERE {self.fresh()}"))
                conn.execute(sa.text("TRUNCATE unread_counters, chats, workers CASCADE"))
        if self.since is not None:
            # What the delete left, reclaimed now rather than by an autovacuum in the middle of the
            # next measurement (on whichever side of a growth run it happens to fall).
            with autocommit(self.settings) as conn:
                conn.execute(sa.text("VACUUM jobs, job_attempts"))
        for db in (0, DRAMATIQ_DB, CELERY_DB, ARQ_DB, STAMPS_DB):
            client = self.redis(db)
            if db == 0:
                keys = list(client.scan_iter(match=f"{self.settings.redis_namespace}:*", count=5000))
                for start in range(0, len(keys), 5000):
                    client.delete(*keys[start : start + 5000])
            else:
                client.flushdb()
            client.close()

    def redis(self, db: int = 0) -> redis.Redis:
        url = self.settings.redis_url or ""
        return redis.Redis.from_url(with_db(url, db) if db else url, socket_timeout=30)

    def scalar(self, sql: str, **params: Any) -> Any:
        with transaction(self.settings) as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def server_processes(self) -> list[psutil.Process]:
        """The embedded Postgres (postmaster and backends) and Redis, for CPU accounting; empty
        for servers given by URL."""
        found: list[psutil.Process] = []
        for pidfile in (
            self.workdir / "pg" / "postgres" / "postmaster.pid",
            self.workdir / "redis" / "redis.pid",
        ):
            try:
                root = psutil.Process(int(pidfile.read_text().split()[0]))
                found += [root, *root.children(recursive=True)]
            except (OSError, ValueError, IndexError, psutil.Error):
                continue
        return found

    # -- processes -------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JOBYARD_", "BENCH_")) and k not in ("DATABASE_URL", "REDIS_URL")
        }
        env.update(
            DATABASE_URL=self.settings.database_url or "",
            REDIS_URL=self.settings.redis_url or "",
            JOBYARD_REDIS_NAMESPACE=self.settings.redis_namespace,
            JOBYARD_DATA_KEY=self.settings.data_key or "",
            JOBYARD_LOG_LEVEL=self.log_level,
            JOBYARD_LOG_FORMAT="json",
            JOBYARD_HOME=str(self.workdir / "home"),
            PYTHONPATH=str(ROOT),
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env or self.env(),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def api(self, workers: int = 1, env: dict[str, str] | None = None) -> tuple[Proc, str]:
        """`jobyard api` (with ``env`` added to its environment), once it answers /healthz."""
        port = free_port()
        argv = [JOBYARD, "api", "--port", str(port), "--workers", str(workers)]
        proc = self.spawn("api", argv, self.env(**(env or {})))
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not proc.alive():
                raise RuntimeError(f"the API exited:\n{proc.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return s.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                return False

        wait_until(up, 60, "the API", interval=0.1)
        return proc, base

    def worker(self, queues: Sequence[str] = ("unread_count",), wait: bool = True) -> Proc:
        """`jobyard worker` with the harness's processes and threads; waits until each registered."""
        argv = [JOBYARD, "worker", "--processes", str(WORKER_PROCESSES), "--threads", str(WORKER_THREADS)]
        for q in queues:
            argv += ["--queues", q]
        proc = self.spawn("worker", argv)
        if wait:

            def registered() -> bool:
                if not proc.alive():
                    raise RuntimeError(f"the worker exited:\n{proc.log()}")
                return bool(self.scalar("SELECT count(*) FROM workers") >= WORKER_PROCESSES)

            wait_until(registered, 90, "worker registration", interval=0.05)
        return proc

    def scheduler(self) -> Proc:
        proc = self.spawn("scheduler", [JOBYARD, "scheduler"])
        time.sleep(1.0)  # not waited for by a line (the log level may hide it); it only has to be alive
        if not proc.alive():
            raise RuntimeError(f"the scheduler exited:\n{proc.log()}")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def close(self, keep: bool = False) -> None:
        self.stop_all()
        dispose_engines()
        for stop in reversed(self._stops):
            stop()
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return total
