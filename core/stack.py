"""`jobyard up`: embedded services when no URLs are given, migrations, an admin key, then the farm."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click
import structlog

from core.cli import _service_env, queues_except, wait_for_http, worker_argv
from core.crypto import DATA_KEY_FILE, ensure_data_key_file, resolve_data_key
from core.embedded import EmbeddedPostgres, EmbeddedRedis, remove_services_file, write_services_file
from core.logs import configure_logging
from core.settings import Settings
from core.supervisor import Child, Supervisor

log = structlog.get_logger(__name__)

ADMIN_KEY_FILE = "admin.key"


def run_stack(settings: Settings) -> int:
    configure_logging(settings, process="up")
    home = settings.home_path
    home.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(home) if not settings.database_url else None
    redis_server = EmbeddedRedis(home) if not settings.redis_url else None
    supervisor: Supervisor | None = None
    stop = _StopFlag()
    signal.signal(signal.SIGINT, stop.set)
    signal.signal(signal.SIGTERM, stop.set)
    try:
        if postgres:
            settings = settings.replace(database_url=postgres.start())
            log.info("embedded_postgres_started", data=str(home / "postgres"))
        if redis_server:
            settings = settings.replace(redis_url=redis_server.start())
            log.info("embedded_redis_started", socket=str(redis_server.socket_path))
        write_services_file(home, _urls(settings))
        settings = _with_data_key(settings, home)
        from core.migrate import upgrade

        upgrade(settings)
        admin_key = _ensure_admin_key(settings, home)
        # Children find the data key as this process did: JOBYARD_DATA_KEY, else the home's file.
        env = {**os.environ, **_service_env(settings)}
        supervisor = Supervisor(_children(settings), env, settings.shutdown_timeout_s)
        stop.supervisor = supervisor
        supervisor.start()
        base = f"http://{settings.api_host}:{settings.api_port}"
        api = supervisor.children[0]
        if not wait_for_http(f"{base}/healthz", 60, alive=api.alive) and not stop.requested:
            log.error("api_did_not_start", url=base)
        _banner(base, admin_key, home)
        if not stop.requested:
            supervisor.watch()
        return 0
    finally:
        if supervisor is not None:
            # No new work first (API, scheduler), then let workers finish what they hold.
            supervisor.stop([["api", "scheduler"], ["worker", "worker_embeddings"]])
        remove_services_file(home)
        if redis_server:
            redis_server.stop()
        if postgres:
            postgres.stop()
        log.info("jobyard_stopped")


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.supervisor: Supervisor | None = None

    def set(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.supervisor is not None:
            self.supervisor.request_stop()


def _urls(settings: Settings) -> dict[str, str]:
    return {"database_url": settings.database_url or "", "redis_url": settings.redis_url or ""}


def _children(settings: Settings) -> list[Child]:
    from core.embeddings import EMBEDDINGS_QUEUE

    py = sys.executable
    children = [
        Child(
            "api", [py, "-m", "control_api", "--host", settings.api_host, "--port", str(settings.api_port)]
        ),
    ]
    # Embedding jobs get a worker of their own, the only process that imports torch and holds the
    # model; the other worker consumes every other queue. One process: torch already spreads one
    # model call over every core, and each process would hold its own copy of the model.
    queues = settings.worker_queues or queues_except(settings, ())
    light = queues_except(settings, (EMBEDDINGS_QUEUE,), queues)
    if light:
        worker = worker_argv(
            settings.worker_processes, settings.worker_threads, light, settings.worker_shutdown_timeout_s
        )
        children.append(Child("worker", worker))
    if EMBEDDINGS_QUEUE in queues:
        embeddings = worker_argv(
            1, settings.embedding_worker_threads, (EMBEDDINGS_QUEUE,), settings.worker_shutdown_timeout_s
        )
        children.append(Child("worker_embeddings", embeddings))
    children.append(Child("scheduler", [py, "-m", "workers.scheduler"]))
    return children


def _with_data_key(settings: Settings, home: Path) -> Settings:
    """The data key: JOBYARD_DATA_KEY, else the home's own, made on its first start (mode 0600)."""
    if not settings.data_key and ensure_data_key_file(home):
        log.warning(
            "data_key_generated",
            path=str(home / DATA_KEY_FILE),
            detail="phone numbers are encrypted with this key: back it up; without it they cannot be read",
        )
    return settings.replace(data_key=resolve_data_key(settings))


def _ensure_admin_key(settings: Settings, home: Path) -> str | None:
    """On a home's first start, create a key with every scope; returns its secret that one time."""
    path = home / ADMIN_KEY_FILE
    if path.exists():
        return None
    from core.db import transaction
    from core.keys import SCOPES, create_key

    with transaction(settings) as conn:
        _, secret = create_key(conn, "admin", SCOPES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def _banner(base: str, admin_key: str | None, home: Path) -> None:
    key_line = (
        f"admin key:  {admin_key}   (shown once; saved to {home / ADMIN_KEY_FILE})"
        if admin_key
        else f"admin key:  in {home / ADMIN_KEY_FILE}"
    )
    click.echo(
        "\nJobyard is up.\n"
        f"  API:        {base}   (OpenAPI: {base}/schema)\n"
        f"  {key_line}\n"
        "  Stop with Ctrl-C.\n",
        err=True,
    )
