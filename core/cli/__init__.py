"""The `jobyard` command.

The long-running roles (api, worker, scheduler) are started by module name in their own process, so
this module never imports `control_api` or `workers` (core imports neither).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import click

from core.cli.common import cli_settings
from core.cli.dlq import dlq
from core.cli.doctor import doctor
from core.cli.jobs import jobs
from core.cli.keys import data_key, keys
from core.cli.queues import queues
from core.launch.roles import known_queues, queues_except, service_env, worker_argv
from core.platform.settings import Settings, get_settings


def _farm_settings() -> Settings:
    """Settings for a long-running role, once Postgres (migrated) and Redis answer."""
    from core.errors import ServicesNotReady
    from core.launch.readiness import wait_for_services

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
        env.update(service_env(settings))
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def check_queues(settings: Settings, queues: tuple[str, ...]) -> None:
    """Refuse a queue no job type uses: Dramatiq would start a worker that consumes nothing, quietly."""
    known = known_queues(settings)
    unknown = [q for q in queues if q not in known]
    if unknown:
        raise click.UsageError(
            f"no job type uses the queue{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known queues: {', '.join(known)} (a deployment's own job types come from JOBYARD_JOB_MODULES)"
        )


def load_env_file(path: Path, *, required: bool) -> bool:
    """Read ``path``'s KEY=value lines into the environment; a variable already set wins.

    Returns whether a file was read. The farm's children inherit the result, so `jobyard up`'s
    processes all see the same settings.
    """
    if not path.is_file():
        if required:
            raise click.BadParameter(f"{path} does not exist", param_hint="--env-file")
        return False
    from dotenv import dotenv_values

    for name, value in dotenv_values(path).items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
    get_settings.cache_clear()  # settings read before this would miss the file's values
    return True


@click.group()
@click.version_option(
    package_name="jobyard",  # looked up when asked for, not at import
    prog_name="jobyard",
    message=f"%(prog)s %(version)s (Python {platform.python_version()})",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="JOBYARD_ENV_FILE",
    help="KEY=value file read first; the real environment wins [JOBYARD_ENV_FILE, or ./.env if present].",
)
def main(env_file: Path | None) -> None:
    """Jobyard: a job-queue worker farm. Postgres is the truth, Redis is the transport.

    Start with `jobyard up` (the whole farm), then `jobyard doctor` (what is missing, and what to do).
    """
    default = Settings().env_file
    # ./.env is read when it is there; a file named on purpose must exist.
    load_env_file(env_file or default, required=env_file not in (None, default))


@main.command()
@click.option("--host", default=None, help="API interface [JOBYARD_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="API port [JOBYARD_API_PORT, 8000].")
@click.option("--processes", type=int, default=None, help="Worker processes [JOBYARD_WORKER_PROCESSES].")
@click.option("--threads", type=int, default=None, help="Threads per worker [JOBYARD_WORKER_THREADS].")
def up(host: str | None, port: int | None, processes: int | None, threads: int | None) -> None:
    """Run the whole farm: services, migrations, API, workers and scheduler, until Ctrl-C."""
    from core.launch.stack import run_stack

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
    from core.platform.migrate import upgrade

    upgrade(cli_settings())
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
    from core.launch.release import run_release

    sys.exit(run_release(get_settings(), hold))


main.add_command(jobs)
main.add_command(doctor)
main.add_command(dlq)
main.add_command(queues)
main.add_command(keys)
main.add_command(data_key)
