"""`jobyard queues`: list the queues, pause and resume one from the shell.

The command talks to Postgres and Redis directly, with core.engine.pauses' functions (the API's), and
acts as "cli:<os user>" in the audit log. Like the rest of the CLI it imports the database and
broker modules only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import msgspec

from core.cli.common import cli_actor, cli_settings

if TYPE_CHECKING:
    from core.engine.pauses import QueueChange


def _echo_change(change: QueueChange, verb: str) -> None:
    counts = f"queued {change.queued}, running {change.running}, scheduled {change.scheduled}, retrying {change.retrying}"
    if change.dry_run:
        click.echo(
            f"dry run: {change.queue} is {'paused' if change.paused else 'not paused'} ({counts}); nothing was changed"
        )
    elif change.changed:
        click.echo(f"{change.queue} {verb} ({counts}); audit entry {change.audit_id}")
    else:
        click.echo(f"{change.queue} already {verb} ({counts}); nothing was changed")


def _run(verb: str, queue: str, reason: str, dry_run: bool, as_json: bool) -> None:
    from core.catalog import load_job_types
    from core.engine.broker import redis_client
    from core.engine.pauses import pause, resume
    from core.errors import QueueNotFound

    settings = cli_settings()
    load_job_types(settings)  # the queues are the job types'
    client = redis_client(settings)
    act = pause if verb == "paused" else resume
    try:
        change = act(settings, client, queue, actor=cli_actor(), reason=reason, dry_run=dry_run)
    except QueueNotFound as exc:
        raise click.BadParameter(str(exc), param_hint="QUEUE") from None
    finally:
        client.close()
    if as_json:
        click.echo(msgspec.json.encode(change).decode())
    else:
        _echo_change(change, verb)


@click.group()
def queues() -> None:
    """The queues: list them, pause one (it accepts jobs, none start) and resume it."""


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as GET /v1/queues has them.")
def queues_list(as_json: bool) -> None:
    """Every queue: whether it is paused (since when, by whom, why) and its jobs waiting in Redis."""
    from core.catalog import load_job_types
    from core.engine.broker import redis_client
    from core.engine.queues import read_overview

    settings = cli_settings()
    load_job_types(settings)
    client = redis_client(settings)
    try:
        overview = read_overview(settings, client)
    finally:
        client.close()
    for q in overview.queues:
        if as_json:
            click.echo(msgspec.json.encode(q).decode())
            continue
        ready = "?" if q.ready is None else str(q.ready)
        state = (
            f"paused since {q.paused_at:%Y-%m-%d %H:%M:%S} by {q.paused_by}: {q.reason}"
            if q.paused
            else "running"
        )
        click.echo(f"{q.name:<24} ready {ready:>7}  {state}")


@queues.command("pause")
@click.argument("queue")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--dry-run", is_flag=True, help="Show the queue's state and jobs; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The answer as POST /v1/queues/{queue}/pause gives it.")
def queues_pause(queue: str, reason: str, dry_run: bool, as_json: bool) -> None:
    """Pause QUEUE for the whole farm: it accepts jobs, workers start none, the scheduler publishes
    none of its due jobs. Running jobs finish. Pausing a paused queue changes nothing."""
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    _run("paused", queue, reason, dry_run, as_json)


@queues.command("resume")
@click.argument("queue")
@click.option("--reason", default="", help="Why (optional); kept in the audit log.")
@click.option("--dry-run", is_flag=True, help="Show the queue's state and jobs; change nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help="The answer as POST /v1/queues/{queue}/resume gives it."
)
def queues_resume(queue: str, reason: str, dry_run: bool, as_json: bool) -> None:
    """Resume QUEUE: its waiting jobs start at once, in order; its due jobs are published."""
    _run("resumed", queue, reason, dry_run, as_json)
