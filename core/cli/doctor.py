"""`jobyard doctor`: run the checks of core/launch/doctor.py against this host's settings and say what to do.

Exit code 0 when nothing failed (warnings allowed), 1 otherwise, so a deploy script or a CI job can
gate on it. The services are found as every other command finds them: DATABASE_URL and REDIS_URL, or
a running `jobyard up` in JOBYARD_HOME.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from core.cli.common import cli_settings

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}


@click.command()
@click.option(
    "--json", "as_json", is_flag=True, help='{"ok": bool, "checks": [{name, status, detail, fix}]}.'
)
@click.option("--skip-model", is_flag=True, help="Do not load the embedding model (it takes seconds).")
def doctor(as_json: bool, skip_model: bool) -> None:
    """Check what a farm needs (Python, torch, Chromium, Postgres, Redis, the data key, providers,
    the embedding model) and say what to do about each problem."""
    from core.launch.doctor import run_checks
    from core.platform.logs import configure_logging

    settings = cli_settings()
    # The report is the output; the libraries' own lines (a model loading) only when they matter.
    configure_logging(settings.replace(log_level="WARNING"), process="doctor")
    checks = run_checks(settings, model=not skip_model)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = click.style(MARKS[check.status], fg=COLOURS[check.status])
            click.echo(f"  {mark}  {check.name:<{width}}  {check.detail}")
            if check.fix and check.status != "ok":
                click.echo(f"        {'':<{width}}  -> {check.fix}")
        warned = sum(c.status == "warn" for c in checks)
        click.echo(
            f"\n{len(failed)} failure(s), {warned} warning(s)"
            + ("" if failed else ": the farm has what it needs")
        )
    if failed:
        raise SystemExit(1)
