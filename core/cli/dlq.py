"""`jobyard dlq`: list, redrive and discard dead letters from the shell.

The command acts as "cli:<os user>" in the audit log. Like the rest of the CLI it imports the
database and broker modules only when a command runs.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
import msgspec

from core.cli.common import cli_actor, cli_settings

if TYPE_CHECKING:
    from core.engine.deadletters import DeadFilter, Outcome, Selection
    from core.engine.jobs import Job


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time; without a zone it is read as local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-01-31T14:00:00Z)") from None
    return moment if moment.tzinfo else moment.astimezone()


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--type", "job_type", default=None, help="Job type."),
        click.option("--error-code", default=None, help="Code of the error the job died with."),
        click.option("-q", "--search", default=None, help="Text in the error message or the payload."),
        click.option("--since", callback=_moment, metavar="TIME", help="Died at or after this time."),
        click.option("--until", callback=_moment, metavar="TIME", help="Died before this time."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--id, --all and the filter options, handed to ``command`` as one ``selection``."""

    @functools.wraps(command)
    def with_selection(
        *,
        job_type: str | None,
        error_code: str | None,
        search: str | None,
        since: datetime | None,
        until: datetime | None,
        ids: tuple[uuid.UUID, ...],
        select_all: bool,
        **rest: Any,
    ) -> Any:
        f = _filter(job_type, error_code, search, since, until)
        return command(selection=_selection(ids, select_all, f), **rest)

    options = click.option(
        "--all", "select_all", is_flag=True, help="Every dead letter (instead of --id or a filter)."
    )(with_selection)
    options = click.option(
        "--id", "ids", type=click.UUID, multiple=True, help="A dead job's id (repeat); not with a filter."
    )(options)
    return _filter_options(options)


def _filter(
    job_type: str | None, error_code: str | None, search: str | None, since: Any, until: Any
) -> DeadFilter:
    from core.engine.deadletters import DeadFilter

    return DeadFilter(type=job_type, error_code=error_code, q=search, since=since, until=until)


def _selection(ids: tuple[uuid.UUID, ...], select_all: bool, f: DeadFilter) -> Selection:
    from core.engine.deadletters import Selection

    filtered = bool(msgspec.to_builtins(f))
    if sum((bool(ids), filtered, select_all)) != 1:
        raise click.UsageError("select with --id, with filter options, or with --all (exactly one of them)")
    return Selection(ids=ids) if ids else Selection(filter=f)


def _reason(reason: str) -> str:
    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    return reason


def _patch(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        patch = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload-patch") from None
    if not isinstance(patch, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--payload-patch")
    return patch


def _line(job: Job) -> str:
    error = job.error or {}
    died = job.finished_at.isoformat(timespec="seconds") if job.finished_at else "-"
    message = str(error.get("message", "")).replace("\n", " ")[:80]
    return f"{job.id}  {job.type:<18} {error.get('code', '-'):<22} {died}  {message}"


def _go_ahead(plan: Outcome, verb: str, dry_run: bool, yes: bool) -> bool:
    """Show what matches; whether to ``verb`` it: not a dry run, something matched, and confirmed."""
    click.echo(f"{plan.matched} dead letter(s) match")
    for job in plan.preview:
        click.echo(f"  {_line(job)}")
    if plan.matched > len(plan.preview):
        click.echo(f"  … and {plan.matched - len(plan.preview)} more")
    if dry_run or not plan.matched:
        click.echo("dry run: nothing was changed" if dry_run else f"nothing to {verb}")
        return False
    if not yes:
        click.confirm(f"{verb.capitalize()} {plan.matched} dead letter(s)?", abort=True)
    return True


@click.group()
def dlq() -> None:
    """The dead letters: list them, redrive them (fresh retry budget) or discard them."""


@dlq.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="Where the previous page ended.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(
    job_type: str | None,
    error_code: str | None,
    search: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List dead letters, newest first, with the error each died with."""
    from core.engine.deadletters import list_dead
    from core.errors import BadCursor
    from core.platform.db import transaction

    f = _filter(job_type, error_code, search, since, until)
    try:
        with transaction(cli_settings()) as conn:
            items, next_cursor = list_dead(conn, f, limit, cursor)
    except BadCursor as exc:
        raise click.BadParameter(str(exc), param_hint="--cursor") from None
    for job in items:
        click.echo(msgspec.json.encode(job).decode() if as_json else _line(job))
    if next_cursor:
        click.echo(f"more: --cursor {next_cursor}", err=True)


@dlq.command("redrive")
@_selection_options
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--payload-patch", default=None, help="JSON merge patch applied to each payload first.")
@click.option("--dry-run", is_flag=True, help="Show what matches; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_redrive(
    selection: Selection,
    reason: str,
    payload_patch: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Queue dead letters again with a fresh retry budget; their attempt history is kept."""
    from core.catalog import load_job_types
    from core.engine.broker import build_broker
    from core.engine.deadletters import dry_run_redrive
    from core.engine.redrive import redrive
    from core.errors import InvalidPayloads
    from core.platform.db import transaction

    reason, patch = _reason(reason), _patch(payload_patch)
    settings = cli_settings()
    load_job_types(settings)  # payloads are checked against their types' schemas
    try:
        with transaction(settings) as conn:
            plan = dry_run_redrive(conn, selection, patch)
    except InvalidPayloads as exc:
        lines = [f"  {e['job_id']}  {e['field']}: {e['message']}" for e in exc.errors]
        raise click.ClickException("\n".join([f"{exc}; nothing was changed", *lines])) from None
    if not _go_ahead(plan, "redrive", dry_run, yes):
        return
    broker = build_broker(settings)
    try:
        with click.progressbar(length=plan.matched, label="redriving") as bar:
            out = redrive(settings, broker, selection, reason, cli_actor(), patch, progress=bar.update)
    finally:
        broker.client.close()
    click.echo(f"redriven {out.changed} of {out.matched} (audit {out.audit_id})")


@dlq.command("discard")
@_selection_options
@click.option("--reason", required=True, help="Why; stored on each job and in the audit log.")
@click.option("--dry-run", is_flag=True, help="Show what matches; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_discard(
    selection: Selection,
    reason: str,
    dry_run: bool,
    yes: bool,
) -> None:
    """Give up on dead letters: they become cancelled, with the reason as their error."""
    from core.engine.deadletters import dry_run_discard
    from core.engine.redrive import discard
    from core.platform.db import transaction

    reason = _reason(reason)
    settings = cli_settings()
    with transaction(settings) as conn:
        plan = dry_run_discard(conn, selection)
    if not _go_ahead(plan, "discard", dry_run, yes):
        return
    with click.progressbar(length=plan.matched, label="discarding") as bar:
        out = discard(settings, selection, reason, cli_actor(), progress=bar.update)
    click.echo(f"discarded {out.changed} of {out.matched} (audit {out.audit_id})")
