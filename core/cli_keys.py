"""`jobyard keys` and `jobyard data-key`: API keys and the data key, from the shell.

Like the rest of the CLI it imports the database modules only when a command runs.
"""

from __future__ import annotations

from datetime import timedelta

import click

from core.settings import Settings


def _settings() -> Settings:
    from core.cli import _settings as farm_settings

    return farm_settings()


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, required=True, help="jobs:write, jobs:read or ops (repeat)."
)
@click.option("--expires-in-days", type=float, default=None)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=None,
    help="Requests per second for this key; 0: unlimited [JOBYARD_RATE_LIMIT_PER_S].",
)
def keys_create(
    name: str, scopes: tuple[str, ...], expires_in_days: float | None, rate_limit: float | None
) -> None:
    """Create a key; its secret is printed once and never stored."""
    from core.db import transaction
    from core.jobs import utcnow
    from core.keys import UnknownScope, create_key

    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    try:
        with transaction(_settings()) as conn:
            key, secret = create_key(conn, name, scopes, expires, rate_limit)
    except UnknownScope as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from None
    click.echo(f"created key {key.name} ({key.id}) with scopes {', '.join(key.scopes)}")
    click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as GET /v1/keys has them.")
def keys_list(as_json: bool) -> None:
    """List keys: prefix, name, scopes, last use and state (never a secret)."""
    import msgspec

    from core.db import transaction
    from core.jobs import utcnow
    from core.keys import list_keys

    with transaction(_settings()) as conn:
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
        click.echo(f"{k.id}  {k.prefix}…  {k.name:<20} {','.join(k.scopes):<28} {used:<24} {state}")


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
    from core.db import transaction
    from core.keys import KeyNotFound, NotRotatable, find_key, rotate_key

    settings = _settings()
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
    from core.db import transaction
    from core.keys import revoke_key

    with transaction(_settings()) as conn:
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
    from core.crypto import generate_data_key

    click.echo(generate_data_key())
