"""WhatsApp numbers: the farm's own (JOBYARD_WHATSAPP_*), and a tenant's own, set through the API.

A tenant with a number of its own sends its jobs' messages through it (its phone number id and
token), and the webhook finds the tenant by the number a notification was sent to
(``metadata.phone_number_id``) and checks the signature with that tenant's app secret. A tenant
without one sends through the farm's number, as before tenants.

The secrets (access token, app secret, verify token) are kept sealed under the data key
(core/platform/crypto.py), each bound to its field and its tenant, so a sealed token copied into
another tenant's row does not open. They are write-only: nothing here returns them but to the code
that sends or checks a signature, and every process that opens or receives one teaches it to the
log redactor first (core/platform/redact.py). `jobyard data-key rotate` re-seals them.

No process caches them: a send reads its tenant's row (one primary-key probe in the transaction it
opens anyway), so a changed token is used from the next send on, in every worker, without a restart.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.jobs import utcnow
from core.errors import SealedValueError, WhatsAppNumberTaken
from core.platform.crypto import data_cipher, key_label
from core.platform.redact import learn_secrets
from core.platform.settings import Settings
from core.platform.tables import tenant_whatsapp as tw
from core.platform.tenants import DEFAULT_TENANT

#: The sealed columns, and the field each one's associated data names.
SEALED = {"token_sealed": "token", "app_secret_sealed": "app_secret", "verify_token_sealed": "verify_token"}
#: A phone number id as Meta writes them: digits.
PHONE_NUMBER_ID_PATTERN = r"^[0-9]{1,32}$"
PHONE_NUMBER_ID = re.compile(PHONE_NUMBER_ID_PATTERN[1:-1])
#: Characters of the access token the API shows, to tell two tokens apart; never more.
VISIBLE_TOKEN_CHARS = 4


def sealing_context(column: str, tenant: str) -> str:
    """What a tenant's sealed secret is bound to: its field and its tenant."""
    return f"tenant_whatsapp.{SEALED[column]}:{tenant}"


@dataclass(frozen=True, slots=True)
class WhatsAppNumber:
    """A number to send through and to check webhooks for, its secrets in clear (never logged)."""

    #: The tenant whose number it is; None for the farm's own, shared by every tenant without one.
    tenant: str | None
    phone_number_id: str | None
    token: str | None = field(default=None, repr=False)
    app_secret: str | None = field(default=None, repr=False)
    verify_token: str | None = field(default=None, repr=False)

    @property
    def is_farms(self) -> bool:
        return self.tenant is None

    @property
    def owner(self) -> str:
        """The tenant whose opt-outs a STOP to this number records: ``default`` for the farm's."""
        return self.tenant or DEFAULT_TENANT


def farm_number(settings: Settings) -> WhatsAppNumber:
    """The farm's own number, from its settings (any part may be unset)."""
    return WhatsAppNumber(
        tenant=None,
        phone_number_id=settings.whatsapp_phone_number_id,
        token=settings.whatsapp_token,
        app_secret=settings.whatsapp_app_secret,
        verify_token=settings.whatsapp_verify_token,
    )


class TenantWhatsApp(msgspec.Struct, kw_only=True):
    """A tenant's number as the API shows it: whether each secret is set, never the secret."""

    tenant: str
    phone_number_id: str
    token_set: bool
    #: The last characters of the access token, to tell which one is in use (null when this API
    #: process cannot open it: sealed under a data key it does not hold).
    token_last4: str | None
    app_secret_set: bool
    verify_token_set: bool
    #: The data key the secrets are sealed under (`jobyard data-key rotate` moves them).
    key_id: str
    created_at: datetime
    updated_at: datetime
    #: The API key that last set it.
    updated_by: uuid.UUID | None


def _view(row: Any) -> TenantWhatsApp:
    m = row._mapping
    try:
        token = data_cipher().open(m["token_sealed"], sealing_context("token_sealed", m["tenant"]))
        learn_secrets(token)
        last4: str | None = token[-VISIBLE_TOKEN_CHARS:] if len(token) > 2 * VISIBLE_TOKEN_CHARS else None
    except SealedValueError:
        last4 = None
    return TenantWhatsApp(
        tenant=m["tenant"],
        phone_number_id=m["phone_number_id"],
        token_set=True,
        token_last4=last4,
        app_secret_set=True,
        verify_token_set=m["verify_token_sealed"] is not None,
        key_id=m["key_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        updated_by=m["updated_by"],
    )


def _opened(row: Any) -> WhatsAppNumber:
    """The row's secrets in clear; SealedValueError when one does not open with this process's keys."""
    m = row._mapping
    ring = data_cipher()
    tenant = m["tenant"]
    clear = {
        name: ring.open(m[column], sealing_context(column, tenant)) if m[column] is not None else None
        for column, name in SEALED.items()
    }
    learn_secrets(*clear.values())
    return WhatsAppNumber(tenant=tenant, phone_number_id=m["phone_number_id"], **clear)


def set_number(
    conn: Connection,
    tenant: str,
    *,
    phone_number_id: str,
    token: str,
    app_secret: str,
    verify_token: str | None,
    by: uuid.UUID | None,
    farm_phone_number_id: str | None,
) -> tuple[TenantWhatsApp, bool]:
    """Give ``tenant`` its own number, or replace it whole; returns it and whether it is new.

    WhatsAppNumberTaken when the number is another tenant's or the farm's own: a webhook for it
    must find exactly one owner, and one app secret to check it with.
    """
    learn_secrets(token, app_secret, verify_token)
    if phone_number_id == farm_phone_number_id:
        raise WhatsAppNumberTaken(
            f"{phone_number_id} is the farm's own number (JOBYARD_WHATSAPP_PHONE_NUMBER_ID)"
        )
    holder = conn.execute(
        sa.select(tw.c.tenant).where(tw.c.phone_number_id == phone_number_id, tw.c.tenant != tenant)
    ).first()
    if holder is not None:
        raise WhatsAppNumberTaken(f"{phone_number_id} is another tenant's number")
    ring = data_cipher()
    now = utcnow()
    values = {
        "phone_number_id": phone_number_id,
        "token_sealed": ring.seal(token, sealing_context("token_sealed", tenant)),
        "app_secret_sealed": ring.seal(app_secret, sealing_context("app_secret_sealed", tenant)),
        "verify_token_sealed": (
            ring.seal(verify_token, sealing_context("verify_token_sealed", tenant)) if verify_token else None
        ),
        "key_id": ring.key_id,
        "updated_at": now,
        "updated_by": by,
    }
    existed = conn.execute(sa.select(tw.c.tenant).where(tw.c.tenant == tenant).with_for_update()).first()
    try:
        with conn.begin_nested():  # another tenant taking the number this instant: 409, not a 500
            row = conn.execute(
                pg_insert(tw)
                .values(tenant=tenant, created_at=now, **values)
                .on_conflict_do_update(index_elements=[tw.c.tenant], set_=values)
                .returning(*tw.c)
            ).one()
    except sa.exc.IntegrityError:
        raise WhatsAppNumberTaken(f"{phone_number_id} is another tenant's number") from None
    return _view(row), existed is None


def get_number(conn: Connection, tenant: str) -> TenantWhatsApp | None:
    row = conn.execute(sa.select(tw).where(tw.c.tenant == tenant)).first()
    return _view(row) if row is not None else None


def delete_number(conn: Connection, tenant: str) -> TenantWhatsApp | None:
    """Remove ``tenant``'s own number (its jobs send through the farm's again); what it was, or None."""
    row = conn.execute(sa.delete(tw).where(tw.c.tenant == tenant).returning(*tw.c)).first()
    return _view(row) if row is not None else None


def tenant_number(conn: Connection, tenant: str) -> WhatsAppNumber | None:
    """``tenant``'s own number with its secrets, or None when it sends through the farm's.
    SealedValueError when its secrets are sealed under a key this process does not hold."""
    row = conn.execute(sa.select(tw).where(tw.c.tenant == tenant)).first()
    return _opened(row) if row is not None else None


def numbers_by_id(conn: Connection, phone_number_ids: set[str]) -> dict[str, WhatsAppNumber]:
    """The tenant numbers among these phone number ids, with their secrets (one query). SealedValueError
    as for tenant_number."""
    if not phone_number_ids:
        return {}
    rows = conn.execute(sa.select(tw).where(tw.c.phone_number_id.in_(sorted(phone_number_ids))))
    return {row.phone_number_id: _opened(row) for row in rows}


def verify_tokens(conn: Connection) -> list[str]:
    """Every tenant's webhook verify token that opens with this process's keys (a handshake names
    no number, so it is matched against each)."""
    found = []
    for row in conn.execute(sa.select(tw).where(tw.c.verify_token_sealed.isnot(None))):
        try:
            token = _opened(row).verify_token
        except SealedValueError:
            continue
        if token:
            found.append(token)
    return found


def unopenable_message(tenant: str, exc: SealedValueError) -> str:
    """Why a tenant's number cannot be used by this process, for a job's error or a log line."""
    held = ", ".join(key_label(k) for k in sorted(data_cipher().key_ids))
    return (
        f"tenant {tenant}'s WhatsApp secrets {exc.args[0] if exc.args else 'do not open'} (this process "
        f"holds {held}): give every process that data key, or set the number again"
    )
