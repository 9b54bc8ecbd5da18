"""`jobyard jobs`: enqueue, show, list and cancel jobs from the shell.

Like the rest of the CLI it imports the database and broker modules only when a command runs.
`jobs show --wait` is for scripts: its exit code says how the job ended.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click
import msgspec

from core.cli.common import cli_settings

if TYPE_CHECKING:
    from core.engine.jobs import Job

#: `jobs show --wait` exit codes: succeeded 0; dead or cancelled 1; still unfinished at the deadline
#: 124 (as timeout(1) says it).
EXIT_DEAD = 1
EXIT_TIMED_OUT = 124


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a job id", param_hint="JOB_ID") from None


@click.group()
def jobs() -> None:
    """Enqueue, inspect, list and cancel jobs."""


@jobs.command("enqueue")
@click.argument("job_type")
@click.argument("payload")
@click.option("--delay-seconds", type=int, default=None)
@click.option("--business-key", default=None)
@click.option("--idempotency-key", default=None)
@click.option(
    "--priority", type=click.IntRange(0, 9), default=5, show_default=True, help="9 is the most urgent"
)
def jobs_enqueue(
    job_type: str,
    payload: str,
    delay_seconds: int | None,
    business_key: str | None,
    idempotency_key: str | None,
    priority: int,
) -> None:
    """Enqueue a job of JOB_TYPE with a JSON PAYLOAD; prints the job."""
    from core.catalog import load_job_types
    from core.engine.broker import build_broker
    from core.engine.job_types import get_job_type, validate_payload
    from core.engine.jobs import NewJob, enqueue, utcnow
    from core.errors import UnknownJobType

    settings = cli_settings()
    load_job_types(settings)
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
        priority=priority,
    )
    broker = build_broker(settings)
    (result,) = enqueue([new], broker, settings)
    click.echo(msgspec.json.encode(result.job).decode())


@jobs.command("show")
@click.argument("job_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to wait for the job to finish; then the exit code says how it ended: 0 succeeded, "
    f"{EXIT_DEAD} dead or cancelled, {EXIT_TIMED_OUT} not finished in time.",
)
def jobs_show(job_id: str, wait: float) -> None:
    """Print a job as JSON."""
    from core.engine.jobs import FINAL
    from core.engine.queries import get_job
    from core.errors import JobNotFound
    from core.platform.db import transaction

    settings = cli_settings()
    ident = _job_id(job_id)
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
    if wait:
        _exit_for(job)


def _exit_for(job: Job) -> None:
    if job.status == "succeeded":
        return
    if job.status in ("dead", "cancelled"):
        error = (job.error or {}).get("code")
        click.echo(f"jobyard: job {job.id} ended {job.status}" + (f" ({error})" if error else ""), err=True)
        raise SystemExit(EXIT_DEAD)
    click.echo(f"jobyard: job {job.id} is still {job.status}", err=True)
    raise SystemExit(EXIT_TIMED_OUT)


@jobs.command("list")
@click.option("--type", "job_type", default=None, help="Job type.")
@click.option(
    "--status",
    type=click.Choice(["scheduled", "queued", "running", "retrying", "succeeded", "dead", "cancelled"]),
    default=None,
)
@click.option("--business-key", default=None)
@click.option("--tenant", default=None, help="Only this tenant's jobs (every tenant's by default).")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, every field.")
def jobs_list(
    job_type: str | None,
    status: str | None,
    business_key: str | None,
    tenant: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    from core.engine.queries import JobFilter, list_jobs
    from core.platform.db import transaction

    f = JobFilter(type=job_type, status=status, business_key=business_key, tenant=tenant)
    with transaction(cli_settings()) as conn:
        found, _ = list_jobs(conn, f, limit, None)
    for job in found:
        if as_json:
            click.echo(msgspec.json.encode(job).decode())
            continue
        error = (job.error or {}).get("code") or ""
        click.echo(
            f"{job.id}  {job.tenant:<12} {job.type:<17} {job.status:<10} attempts {job.attempts:<3} "
            f"{_when(job.created_at)}  {job.business_key or ''}  {error}".rstrip()
        )
    if not found and not as_json:
        click.echo("no jobs", err=True)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


@jobs.command("cancel")
@click.argument("job_id", required=False)
@click.option("--business-key", default=None, help="Cancel every cancellable job with this key instead.")
@click.option(
    "--tenant",
    default="default",
    show_default=True,
    help="The tenant whose business key it is (a business key names jobs within one tenant).",
)
def jobs_cancel(job_id: str | None, business_key: str | None, tenant: str) -> None:
    """Cancel a job (a running one is asked to stop: its worker aborts it), or every job of a business
    key a worker has not claimed yet."""
    from core.engine.queries import cancel_by_business_key, cancel_job
    from core.errors import JobNotFound, NotCancellable
    from core.platform.db import transaction

    if (job_id is None) == (business_key is None):
        raise click.UsageError("give a JOB_ID or --business-key (one of them)")
    settings = cli_settings()
    if business_key is not None:
        with transaction(settings) as conn:
            count = cancel_by_business_key(conn, business_key, tenant)
        click.echo(f"cancelled {count} job(s) of tenant {tenant} with business key {business_key}")
        return
    assert job_id is not None
    try:
        with transaction(settings) as conn:
            job = cancel_job(conn, _job_id(job_id))
    except JobNotFound:
        raise click.ClickException(f"no job {job_id}") from None
    except NotCancellable as exc:
        raise click.ClickException(f"job {job_id} cannot be cancelled: {exc}") from None
    if job.status == "running":
        click.echo(f"job {job_id} is running: its worker was asked to stop it", err=True)
    click.echo(msgspec.json.encode(job).decode())
