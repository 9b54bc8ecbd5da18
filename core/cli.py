"""The `jobyard` command.

The long-running roles (api, worker, scheduler) are started by module name in their own process, so
this module never imports `control_api` or `workers` (core imports neither).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

import click
import msgspec

from core.cli_dlq import dlq
from core.cli_keys import data_key, keys
from core.settings import Settings, get_settings


def _settings() -> Settings:
    from core.embedded import with_running_services

    return with_running_services(get_settings())


def _farm_settings() -> Settings:
    """Settings for a long-running role, once Postgres (migrated) and Redis answer."""
    from core.readiness import ServicesNotReady, wait_for_services

    settings = get_settings()
    try:
        return wait_for_services(
            settings, settings.services_wait_s, lambda why: click.echo(f"jobyard: waiting: {why}", err=True)
        )
    except ServicesNotReady as exc:
        raise click.ClickException(str(exc)) from None


def _exec(argv: list[str], settings: Settings | None = None) -> None:
    env = dict(os.environ)
    if settings is not None:
        env.update(_service_env(settings))
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def _service_env(settings: Settings) -> dict[str, str]:
    env = {}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def worker_argv(
    processes: int, threads: int, queues: tuple[str, ...], shutdown_timeout_s: float
) -> list[str]:
    argv = [sys.executable, "-m", "dramatiq", "workers.entrypoint", "--processes", str(processes)]
    argv += ["--threads", str(threads), "--skip-logging"]
    # Dramatiq takes milliseconds; past this, running jobs are handed back (see core/recovery.py).
    argv += ["--worker-shutdown-timeout", str(int(shutdown_timeout_s * 1000))]
    if queues:
        argv += ["--queues", *queues]
    return argv


def known_queues(settings: Settings) -> tuple[str, ...]:
    """The queues of every registered job type (built-in and JOBYARD_JOB_MODULES)."""
    from core.job_types import job_types, load_job_modules

    load_job_modules(settings)
    return tuple(sorted({t.queue_name for t in job_types().values()}))


def queues_except(
    settings: Settings, excluded: tuple[str, ...], among: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """``among`` (default: every registered job type's queue) less ``excluded``.

    Dramatiq takes only a list of queues to consume; this is how a worker consumes "all but these".
    """
    return tuple(q for q in among or known_queues(settings) if q not in excluded)


def check_queues(settings: Settings, queues: tuple[str, ...]) -> None:
    """Refuse a queue no job type uses: Dramatiq would start a worker that consumes nothing, quietly."""
    known = known_queues(settings)
    unknown = [q for q in queues if q not in known]
    if unknown:
        raise click.UsageError(
            f"no job type uses the queue{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known queues: {', '.join(known)} (a deployment's own job types come from JOBYARD_JOB_MODULES)"
        )


@click.group()
def main() -> None:
    """Jobyard: a job-queue worker farm. Postgres is the truth, Redis is the transport."""


@main.command()
@click.option("--host", default=None, help="API interface [JOBYARD_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="API port [JOBYARD_API_PORT, 8000].")
@click.option("--processes", type=int, default=None, help="Worker processes [JOBYARD_WORKER_PROCESSES].")
@click.option("--threads", type=int, default=None, help="Threads per worker [JOBYARD_WORKER_THREADS].")
def up(host: str | None, port: int | None, processes: int | None, threads: int | None) -> None:
    """Run the whole farm: services, migrations, API, workers and scheduler, until Ctrl-C."""
    from core.stack import run_stack

    settings = get_settings()
    settings = settings.replace(
        api_host=host or settings.api_host,
        api_port=port or settings.api_port,
        worker_processes=processes or settings.worker_processes,
        worker_threads=threads or settings.worker_threads,
    )
    sys.exit(run_stack(settings))


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--workers", type=int, default=1, help="API processes.")
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the control API."""
    settings = _farm_settings()
    argv = [sys.executable, "-m", "control_api", "--host", host or settings.api_host]
    argv += ["--port", str(port or settings.api_port), "--workers", str(workers)]
    _exec(argv, settings)


@main.command()
@click.option("--processes", type=int, default=None, help="Worker processes [JOBYARD_WORKER_PROCESSES].")
@click.option("--threads", type=int, default=None, help="Threads per process [JOBYARD_WORKER_THREADS].")
@click.option("--queues", multiple=True, help="Queues to consume (repeat); default all.")
@click.option(
    "--exclude-queues",
    "excluded",
    multiple=True,
    help="Queues not to consume (repeat); one no job type uses yet is simply not consumed.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to finish running jobs on SIGTERM before handing them back [JOBYARD_WORKER_SHUTDOWN_TIMEOUT].",
)
def worker(
    processes: int | None,
    threads: int | None,
    queues: tuple[str, ...],
    excluded: tuple[str, ...],
    shutdown_timeout: float | None,
) -> None:
    """Run Dramatiq worker processes for the job types."""
    settings = get_settings()
    queues = queues or settings.worker_queues
    check_queues(settings, queues)
    if excluded:
        queues = queues_except(settings, excluded, queues)
        if not queues:
            raise click.UsageError("--exclude-queues leaves no queue to consume")
    settings = _farm_settings()
    argv = worker_argv(
        processes or settings.worker_processes,
        threads or settings.worker_threads,
        queues,
        settings.worker_shutdown_timeout_s if shutdown_timeout is None else shutdown_timeout,
    )
    _exec(argv, settings)


@main.command()
def scheduler() -> None:
    """Publish due jobs and re-publish jobs whose message Redis lost."""
    settings = _farm_settings()
    _exec([sys.executable, "-m", "workers.scheduler"], settings)


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    from core.migrate import upgrade

    upgrade(_settings())
    click.echo("database is up to date")


@main.command()
@click.option(
    "--hold/--no-hold",
    default=None,
    help="Keep running after migrating [default: when it starts embedded services, or under honcho/foreman].",
)
def release(hold: bool | None) -> None:
    """The Procfile's release step: migrate, starting embedded Postgres/Redis first when no URLs are set.

    It exits when done (a PaaS release phase, a Kubernetes Job), except where the farm needs it to stay:
    it holds the embedded services it started, and under honcho or foreman, which stop every process
    when one exits, it stays until Ctrl-C.
    """
    from core.release import run_release

    sys.exit(run_release(get_settings(), hold))


@main.group()
def jobs() -> None:
    """Enqueue and inspect jobs."""


@jobs.command("enqueue")
@click.argument("job_type")
@click.argument("payload")
@click.option("--delay-seconds", type=int, default=None)
@click.option("--business-key", default=None)
@click.option("--idempotency-key", default=None)
def jobs_enqueue(
    job_type: str,
    payload: str,
    delay_seconds: int | None,
    business_key: str | None,
    idempotency_key: str | None,
) -> None:
    """Enqueue a job of JOB_TYPE with a JSON PAYLOAD."""
    from core.broker import build_broker
    from core.job_types import UnknownJobType, get_job_type, load_job_modules, validate_payload
    from core.jobs import NewJob, enqueue, utcnow

    settings = _settings()
    load_job_modules(settings)
    try:
        data = json.loads(payload)
        jt = get_job_type(job_type)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="PAYLOAD") from None
    except UnknownJobType:
        raise click.BadParameter(f"unknown job type {job_type!r}", param_hint="JOB_TYPE") from None
    normalized, errors = validate_payload(jt, data)
    if errors:
        raise click.BadParameter("; ".join(f"{e.field}: {e.message}" for e in errors), param_hint="PAYLOAD")
    run_at = utcnow() + timedelta(seconds=delay_seconds) if delay_seconds else None
    new = NewJob(
        type=job_type,
        payload=normalized,
        run_at=run_at,
        business_key=business_key,
        idempotency_key=idempotency_key,
    )
    broker = build_broker(settings)
    (result,) = enqueue([new], broker, settings)
    click.echo(msgspec.json.encode(result.job).decode())


@jobs.command("show")
@click.argument("job_id")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for the job to finish.")
def jobs_show(job_id: str, wait: float) -> None:
    """Print a job as JSON."""
    from core.db import transaction
    from core.jobs import FINAL
    from core.queries import JobNotFound, get_job

    settings = _settings()
    try:
        ident = uuid.UUID(job_id)
    except ValueError:
        raise click.BadParameter("not a job id", param_hint="JOB_ID") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            with transaction(settings) as conn:
                job = get_job(conn, ident)
        except JobNotFound:
            raise click.ClickException(f"no job {job_id}") from None
        if job.status in FINAL or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    click.echo(msgspec.json.encode(job).decode())


def wait_for_http(url: str, timeout_s: float, alive: Any = None) -> bool:
    """Poll ``url`` until it answers 200, the timeout passes, or ``alive()`` turns false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own local URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


main.add_command(dlq)
main.add_command(keys)
main.add_command(data_key)

if __name__ == "__main__":
    main()
