"""`jobyard keys` and `jobyard data-key`: API keys and the data key, from the shell.

Like the rest of the CLI it imports the database modules only when a command runs.
"""

from __future__ import annotations

from datetime import timedelta

import click

from core.cli.common import cli_actor, cli_settings
from core.platform.settings import Settings


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="jobs:write, jobs:read, ops or admin (every tenant's data, not only its own) (repeat).",
)
@click.option(
    "--tenant", default="default", show_default=True, help="The tenant whose data the key reaches (a slug)."
)
@click.option("--expires-in-days", type=float, default=None)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=None,
    help="Requests per second for this key; 0: unlimited [JOBYARD_RATE_LIMIT_PER_S].",
)
def keys_create(
    name: str, scopes: tuple[str, ...], tenant: str, expires_in_days: float | None, rate_limit: float | None
) -> None:
    """Create a key; its secret is printed once and never stored."""
    from core.access.keys import create_key
    from core.engine.jobs import utcnow
    from core.errors import InvalidTenant, UnknownScope
    from core.platform.db import transaction

    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    try:
        with transaction(cli_settings()) as conn:
            key, secret = create_key(conn, name, scopes, expires, rate_limit, tenant=tenant)
    except UnknownScope as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from None
    except InvalidTenant as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant") from None
    click.echo(
        f"created key {key.name} ({key.id}) of tenant {key.tenant} with scopes {', '.join(key.scopes)}"
    )
    click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as GET /v1/keys has them.")
def keys_list(as_json: bool) -> None:
    """List keys: prefix, name, scopes, last use and state (never a secret)."""
    import msgspec

    from core.access.keys import list_keys
    from core.engine.jobs import utcnow
    from core.platform.db import transaction

    with transaction(cli_settings()) as conn:
        found = list_keys(conn)
    now = utcnow()
    for k in found:
        state = "active"
        if k.revoked_at:
            state = "revoked"
        elif k.expires_at and k.expires_at <= now:
            state = "expired"
        elif k.replaced_by:
            state = f"rotated, valid until {k.expires_at:%Y-%m-%d %H:%M}Z"
        if as_json:
            # The API's fields, and the state worked out as above.
            click.echo(msgspec.json.encode({**msgspec.to_builtins(k), "state": state.split(",")[0]}).decode())
            continue
        used = f"used {k.last_used_at:%Y-%m-%d %H:%M}Z" if k.last_used_at else "never used"
        click.echo(
            f"{k.id}  {k.prefix}…  {k.tenant:<12} {k.name:<20} {','.join(k.scopes):<34} {used:<24} {state}"
        )


@keys.command("rotate")
@click.argument("key_id_or_prefix")
@click.option(
    "--grace-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="How long the old value keeps working [JOBYARD_KEY_ROTATION_GRACE].",
)
def keys_rotate(key_id_or_prefix: str, grace_seconds: float | None) -> None:
    """Replace a key by a new one (printed once); the old one works for a grace period."""
    from core.access.keys import find_key, rotate_key
    from core.errors import KeyNotFound, NotRotatable
    from core.platform.db import transaction

    settings = cli_settings()
    grace = settings.key_rotation_grace_s if grace_seconds is None else grace_seconds
    try:
        with transaction(settings) as conn:
            new, secret, old = rotate_key(conn, find_key(conn, key_id_or_prefix).id, grace)
    except (KeyNotFound, NotRotatable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rotated key {old.name}: {old.prefix}… works until {old.expires_at:%Y-%m-%d %H:%M:%S}Z")
    click.echo(f"new key {new.id}:")
    click.echo(secret)


@keys.command("revoke")
@click.argument("key_id_or_prefix")
def keys_revoke(key_id_or_prefix: str) -> None:
    """Revoke a key by id or visible prefix; every API process refuses it within a second."""
    from core.access.keys import revoke_key
    from core.platform.db import transaction

    with transaction(cli_settings()) as conn:
        n = revoke_key(conn, key_id_or_prefix)
    if not n:
        raise click.ClickException(f"no active key matches {key_id_or_prefix!r}")
    click.echo(f"revoked {n} key(s)")


@click.group("data-key")
def data_key() -> None:
    """The key that encrypts phone numbers at rest (JOBYARD_DATA_KEY)."""


@data_key.command("generate")
def data_key_generate() -> None:
    """Print a new random data key, for JOBYARD_DATA_KEY (keep it in your secret store)."""
    from core.platform.crypto import generate_data_key

    click.echo(generate_data_key())


def _ring_settings() -> Settings:
    """Settings, with the job modules loaded (their sealed fields) and the key ring installed."""
    from core.catalog import load_job_types
    from core.errors import DataKeyError
    from core.platform.crypto import use_data_key

    settings = cli_settings()
    load_job_types(settings)
    try:
        use_data_key(settings)
    except DataKeyError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _pending_lines(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in counts.items())


@data_key.command("status")
def data_key_status() -> None:
    """Show the key ring and what is still sealed or hashed under another key."""
    from core.datakeys.reseal import pending_counts
    from core.messaging.optouts import opt_out_key_ids
    from core.platform.crypto import data_cipher, key_label
    from core.platform.db import transaction

    settings = _ring_settings()
    ring = data_cipher()
    with transaction(settings) as conn:
        counts = pending_counts(conn, ring)
        opt_out_keys = opt_out_key_ids(conn)
    older = sorted(ring.key_ids - {ring.key_id})
    click.echo(f"current key: {key_label(ring.key_id)}")
    click.echo(f"older keys:  {', '.join(key_label(k) for k in older) or 'none'}")
    click.echo(
        f"opt-outs are hashed under: {', '.join(key_label(k) for k in sorted(opt_out_keys)) or 'no opt-outs'}"
    )
    missing = sorted(opt_out_keys - ring.key_ids)
    if missing:
        click.echo(
            f"MISSING: {', '.join(key_label(k) for k in missing)}: workers with this ring refuse to send"
        )
    click.echo(f"not yet under the current key: {_pending_lines(counts)} ({sum(counts.values())} rows)")


@data_key.command("rotate")
@click.option("--reason", default="data key rotation", show_default=True, help="Stored in the audit log.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Rows per transaction [500].",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def data_key_rotate(reason: str, batch_size: int | None, yes: bool) -> None:
    """Re-seal and re-hash every phone number under the current JOBYARD_DATA_KEY, while the farm runs.

    Give every process the new key as JOBYARD_DATA_KEY and the old one in JOBYARD_DATA_KEYS_OLD
    first (docs: the data key ring). Safe to stop and to run again: it goes on where it stopped.
    """
    from core.datakeys.reseal import pending_counts
    from core.datakeys.rotation import BATCH_SIZE, rotate
    from core.platform.crypto import data_cipher, key_label
    from core.platform.db import transaction

    if not reason.strip():
        raise click.BadParameter("must not be empty", param_hint="--reason")
    settings = _ring_settings()
    ring = data_cipher()
    with transaction(settings) as conn:
        counts = pending_counts(conn, ring)
    total = sum(counts.values())
    click.echo(f"current key {key_label(ring.key_id)}; to move: {_pending_lines(counts)} ({total} rows)")
    if not total:
        click.echo("nothing to rotate: every sealed value and hash is under the current key")
        return
    if not yes:
        click.confirm(f"Re-seal {total} row(s) under {key_label(ring.key_id)}?", abort=True)
    with click.progressbar(length=total, label="re-sealing") as bar:
        report = rotate(
            settings,
            ring,
            actor=cli_actor(),
            reason=reason,
            batch_size=batch_size or BATCH_SIZE,
            progress=bar.update,
        )
    moved = ", ".join(f"{t} {n}" for t, n in report.moved.items())
    click.echo(f"moved under {key_label(report.key_id)}: {moved} (audit {report.audit_id})")
    if report.from_key_ids:
        click.echo(f"moved from: {', '.join(report.from_key_ids)}")
    if report.merged_opt_outs:
        click.echo(f"{report.merged_opt_outs} opt-out(s) were recorded under both keys; one row each is kept")
    if report.remaining:
        unopenable = sum(report.unopenable.values())
        lines = [f"{report.remaining} row(s) are still not under {key_label(report.key_id)}"]
        if report.missing_key_ids:
            lines.append(
                f"{unopenable} hold values sealed under {', '.join(report.missing_key_ids)}, which this ring "
                "does not hold: add that key to JOBYARD_DATA_KEYS_OLD and run this again"
            )
        elif unopenable:
            lines.append(f"{unopenable} hold damaged values (see the rotation_value_unopenable log lines)")
        if report.remaining > unopenable:
            lines.append(
                "the rest were held by running work on every pass, or written meanwhile under an older key "
                "(is every process running with the new JOBYARD_DATA_KEY?): run this again"
            )
        raise click.ClickException("; ".join(lines))
    click.echo(
        "done: every sealed value and hash is under the current key. Older keys can leave "
        "JOBYARD_DATA_KEYS_OLD once no process seals with them any more."
    )
