"""`jobyard release`: the Procfile's release step, which is also a local farm's services process.

On a PaaS (Heroku's release phase), in compose's one-shot `migrate` service or a Kubernetes Job it
migrates and exits. Under honcho or foreman every Procfile line must keep running (they stop the
whole farm when one process exits), and with no URLs set somebody has to start and hold the
embedded Postgres and Redis: there it does both, creates the admin key on a home's first start like
`jobyard up`, and stays until Ctrl-C. The farm's other processes wait for it (core/launch/readiness.py).
"""

from __future__ import annotations

import os
import signal
import threading

import click
import structlog

from core.launch.local import (
    LocalServices,
    admin_key_line,
    ensure_admin_key,
    ensure_local_data_key,
    wait_for_clients_to_leave,
)
from core.launch.readiness import wait_for_postgres
from core.platform.logs import configure_logging
from core.platform.settings import Settings

log = structlog.get_logger(__name__)

#: Variables a Procfile runner sets in every process it starts: honcho, foreman.
PROCFILE_RUNNER_VARIABLES = ("HONCHO_PROCESS_NAME", "PS")
#: honcho SIGKILLs whatever is left 5 s after its SIGTERM, and the embedded servers must be down by
#: then (they run in sessions of their own and would outlive a kill): the farm's other processes,
#: stopped at the same moment, get this long to finish their last writes.
CLIENTS_GRACE_S = 3.0


def started_by_procfile_runner() -> bool:
    return any(os.environ.get(name) for name in PROCFILE_RUNNER_VARIABLES)


def run_release(settings: Settings, hold: bool | None = None) -> int:
    configure_logging(settings, process="release")
    services = LocalServices.for_settings(settings)
    if hold is None:
        hold = services.embeds_any or started_by_procfile_runner()
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    running = settings
    try:
        if hold:
            # Before the services are published: the farm's other processes read the key at start.
            settings = ensure_local_data_key(settings, settings.home_path)
        running = services.start(settings)
        assert running.database_url is not None
        wait_for_postgres(running.database_url, settings.services_wait_s)
        from core.platform.migrate import upgrade

        upgrade(running)
        log.info("database_migrated")
        if not hold:
            click.echo("database is up to date")
            return 0
        admin_key = ensure_admin_key(running, settings.home_path)
        _banner(services, admin_key, settings)
        stop.wait()
        return 0
    finally:
        if services.embeds_any:
            services.unpublish()
            from core.platform.db import dispose_engines

            dispose_engines()  # our own pooled connections are not clients to wait for
            left = wait_for_clients_to_leave(running, CLIENTS_GRACE_S)
            if left:
                log.warning("clients_still_connected", clients=left, after_s=CLIENTS_GRACE_S)
        services.stop()
        log.info("release_stopped")


def _banner(services: LocalServices, admin_key: str | None, settings: Settings) -> None:
    embedded = [
        name for name, server in (("Postgres", services.postgres), ("Redis", services.redis)) if server
    ]
    where = f"embedded {' and '.join(embedded)} in {services.home}" if embedded else "the given URLs"
    click.echo(
        "\nJobyard's services are ready: database migrated, "
        f"{where}.\n  {admin_key_line(admin_key, settings.home_path)}\n"
        "  The farm's processes find them by themselves; stop with Ctrl-C.\n",
        err=True,
    )
