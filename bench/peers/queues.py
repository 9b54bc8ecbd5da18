"""The queue peers beside bare Dramatiq and Celery: three that keep their jobs in Postgres
(procrastinate, PgQueuer, Oban) and one on Redis (arq), each as its docs recommend running it.

Each Postgres peer has a database of its own on the harness's Postgres (made here, its schema
installed by the peer's own CLI); arq has a Redis database of its own. Their workers are started
WORKER_PROCESSES times (their CLIs run one process each); their clients are small subprocesses
(bench/peers/client.py) that use each library's own API. Oban needs Python >= 3.12 and arq a
redis-py older than Jobyard's, so both run from a venv of their own (``peers_python``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import redis
import sqlalchemy as sa

from bench.harness import ARQ_DB, ROOT, STAMPS_DB, WORKER_PROCESSES, WORKER_THREADS, Bench, Proc, with_db
from bench.peers import LATENCY_KEY, QUEUE
from core.platform.db import autocommit

#: The venv of the peers that cannot share the harness's (BENCH_PEERS_PYTHON overrides it):
#: `python3.12 -m venv .venv-peers && .venv-peers/bin/pip install 'oban>=0.7' 'arq>=0.26'`.
PEERS_VENV = ROOT / ".venv-peers"


@dataclass(frozen=True)
class QueuePeer:
    name: str
    label: str
    distribution: str
    #: "postgres" or "redis": where it keeps its jobs.
    store: str
    #: Runs from the peers' own venv.
    side_venv: bool
    #: Jobs not yet done (Postgres peers: SQL on their database).
    pending_sql: str = ""
    #: Emptied before each measurement.
    tables: tuple[str, ...] = ()
    #: Jobs that ran to success, checked after a drain (Postgres peers that keep them).
    succeeded_sql: str = ""
    #: Whether its client has an API that sends many jobs in one call.
    batch: bool = True

    @property
    def module(self) -> str:
        return f"bench.peers.{self.name}_noop"


QUEUE_PEERS = (
    QueuePeer(
        "procrastinate",
        "procrastinate",
        "procrastinate",
        "postgres",
        False,
        pending_sql="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
        tables=("procrastinate_jobs",),
        succeeded_sql="SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
    ),
    QueuePeer(
        "pgqueuer",
        "PgQueuer",
        "pgqueuer",
        "postgres",
        False,
        pending_sql="SELECT count(*) FROM pgqueuer",
        tables=("pgqueuer", "pgqueuer_log"),
    ),
    QueuePeer(
        "oban",
        "Oban",
        "oban",
        "postgres",
        True,
        pending_sql="SELECT count(*) FROM oban_jobs WHERE state IN ('available', 'scheduled', 'executing', 'retryable')",
        tables=("oban_jobs",),
        succeeded_sql="SELECT count(*) FROM oban_jobs WHERE state = 'completed'",
    ),
    QueuePeer("arq", "arq", "arq", "redis", True, batch=False),
)
POSTGRES_PEERS = tuple(p.name for p in QUEUE_PEERS if p.store == "postgres")
#: The rows of the report, in order: Jobyard's first peers, then these.
NAMES = tuple(p.name for p in QUEUE_PEERS)
LABELS = {p.name: p.label for p in QUEUE_PEERS}
BY_NAME = {p.name: p for p in QUEUE_PEERS}
#: arq's queue (a sorted set; a job stays in it until it is done).
ARQ_QUEUE = "arq:queue"


class Unavailable(RuntimeError):
    """The peer cannot run on this machine; the message says why."""


def peers_python() -> str:
    return os.environ.get("BENCH_PEERS_PYTHON") or str(PEERS_VENV / "bin" / "python")


def _python(peer: QueuePeer) -> str:
    return peers_python() if peer.side_venv else sys.executable


def version(peer: QueuePeer) -> str:
    """The peer's installed version, or raises Unavailable with the reason."""
    python = _python(peer)
    if not Path(python).exists():
        need = "Python >= 3.12" if peer.name == "oban" else "redis-py < 6 (Jobyard's is newer)"
        raise Unavailable(
            f"{peer.label} needs {need}: no peers' venv at {python} (make it as bench/peers/queues.py "
            "and docs/performance.md say, or set BENCH_PEERS_PYTHON)"
        )
    out = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({peer.distribution!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise Unavailable(f"{peer.label} is not installed for {python}: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def _dsn(bench: Bench, peer: QueuePeer) -> str:
    parts = urlsplit(bench.settings.database_url or "")
    return urlunsplit(parts._replace(path=f"/peer_{peer.name}"))


class Side:
    """One peer on the bench: its database or Redis database, its worker, its client."""

    def __init__(self, bench: Bench, name: str) -> None:
        self.bench, self.peer = bench, BY_NAME[name]
        self.version = version(self.peer)
        url = bench.settings.redis_url or ""
        self.dsn = _dsn(bench, self.peer)
        self.env = bench.env(
            BENCH_PEER_DSN=self.dsn,
            BENCH_PEER_REDIS_URL=with_db(url, ARQ_DB),
            BENCH_STAMPS_URL=with_db(url, STAMPS_DB),
        )
        self.stamps = redis.Redis.from_url(with_db(url, STAMPS_DB), socket_timeout=30)
        self.redis = redis.Redis.from_url(with_db(url, ARQ_DB), socket_timeout=30)
        self._db: psycopg.Connection[Any] | None = None
        if self.peer.store == "postgres":
            self._prepare()
            self._db = psycopg.connect(self.dsn, autocommit=True)
        self.clear()

    def clear(self) -> None:
        """No job of the peer's left (its tables emptied; arq's database by Bench.reset, or here)."""
        if self._db is not None:
            self._db.execute(f"TRUNCATE {', '.join(self.peer.tables)} CASCADE")
        else:
            self.redis.flushdb()

    def _bin(self, name: str) -> str:
        return str(Path(_python(self.peer)).parent / name)

    def _prepare(self) -> None:
        """The peer's database, made and given its schema once a run."""
        if self.peer.name in self.bench.peer_databases:
            return
        db = f"peer_{self.peer.name}"
        with autocommit(self.bench.settings) as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
        install = {
            "procrastinate": [
                self._bin("procrastinate"),
                f"--app={self.peer.module}.app",
                "schema",
                "--apply",
            ],
            "pgqueuer": [self._bin("pgq"), "install"],
            "oban": [self._bin("oban"), "install", "--dsn", self.dsn],
        }[self.peer.name]
        out = subprocess.run(
            install,
            env={**self.env, "PGDSN": self.dsn},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(f"installing {self.peer.label}'s schema failed:\n{out.stdout}{out.stderr}")
        self.bench.peer_databases.add(self.peer.name)

    def analyze(self) -> None:
        if self._db is not None:
            self._db.execute("ANALYZE")

    def pending(self) -> int:
        if self._db is None:
            return int(self.redis.zcard(ARQ_QUEUE))
        row = self._db.execute(self.peer.pending_sql).fetchone()
        return int(row[0]) if row else 0

    def succeeded(self) -> int | None:
        if self._db is None or not self.peer.succeeded_sql:
            return None
        row = self._db.execute(self.peer.succeeded_sql).fetchone()
        return int(row[0]) if row else 0

    def client(self, *args: str, timeout: float = 600) -> dict[str, Any]:
        """Runs the peer's client (bench/peers/client.py) and returns what it printed."""
        out = subprocess.run(
            [_python(self.peer), "-m", self.peer.module, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(f"{self.peer.label}'s client {args} failed:\n{out.stderr[-3000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def worker_argv(self) -> list[str]:
        return {
            "procrastinate": [
                self._bin("procrastinate"),
                f"--app={self.peer.module}.app",
                "--log-level",
                "warning",
                "worker",
                "--queues",
                QUEUE,
                "--concurrency",
                str(WORKER_THREADS),
            ],
            "pgqueuer": [_python(self.peer), "-m", self.peer.module, "worker"],
            "oban": [
                self._bin("oban"),
                "start",
                "--dsn",
                self.dsn,
                "--queues",
                f"{QUEUE}:{WORKER_THREADS}",
                "--cron-modules",
                self.peer.module,
            ],
            "arq": [_python(self.peer), "-m", self.peer.module, "worker"],
        }[self.peer.name]

    def start_worker(self) -> Proc:
        """WORKER_PROCESSES copies of the peer's worker under one shell (one process group)."""
        argv = ["sh", "-c", 'for _ in $(seq "$0"); do "$@" & done; wait', str(WORKER_PROCESSES)]
        return self.bench.spawn(f"peer-{self.peer.name}", argv + self.worker_argv(), self.env)

    def wait_ready(self, proc: Proc) -> None:
        """One job sent and done: the workers are up and consuming."""
        self.client("fill", "1")
        deadline = time.monotonic() + 90
        while self.pending():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.peer.label}'s worker did not start:\n{proc.log()[-3000:]}")
            time.sleep(0.05)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self.stamps.close()
        self.redis.close()


def server_cpu(bench: Bench) -> float:
    """CPU seconds Postgres and Redis have used so far, including the backends that have exited: a
    peer's client process is gone (and its backends with it) before its cost is read. The servers'
    root processes count their reaped children; their live children count themselves."""
    procs = bench.server_processes()
    pids = {p.pid for p in procs}
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if p.ppid() not in pids:
                total += t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def attempt(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A peer's figures, or why it has none: a peer that cannot run is named in the report."""
    try:
        return measure()
    except Unavailable as e:
        print(f"      {name}: not run: {e}", flush=True)
        return {"error": str(e), "unavailable": True}
    except Exception as e:
        print(f"      {name}: failed: {e}", flush=True)
        return {"error": f"{type(e).__name__}: {str(e)[-1500:]}"}


def fastest(results: dict[str, Any], key: str) -> str | None:
    """The Postgres peer with the highest ``key`` among those that ran."""
    ran = [n for n in POSTGRES_PEERS if isinstance(results.get(n), dict) and results[n].get(key)]
    return max(ran, key=lambda n: results[n][key]) if ran else None


def stamps(side: Side) -> list[float]:
    return [float(v) for v in side.stamps.lrange(LATENCY_KEY, 0, -1)]
