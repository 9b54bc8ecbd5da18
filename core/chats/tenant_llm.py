"""A tenant's own LLM provider chain, set through the API: its `ai_reply` jobs ask these providers, in
order, instead of the farm's (JOBYARD_LLM_PROVIDERS, or OPENAI_API_KEY and OPENAI_BASE_URL). A
tenant without one asks the farm's, as before tenants.

Each provider is shaped as an entry of JOBYARD_LLM_PROVIDERS (name, base_url, api_key, model). The api
keys are kept sealed under the data key (core/platform/crypto.py), each bound to its field, its
tenant and its provider (``tenant_llm.api_key:shop-a:groq``), so a sealed key copied into another
tenant's row, or to another provider, does not open. They are write-only: nothing here returns them
but to the chain that calls the provider, and every process that receives or opens one teaches it to
the log redactor first (core/platform/redact.py). `jobyard data-key rotate` re-seals them.

A base URL is an address a caller chose, that the farm's workers will call: it must be public
(core/platform/netguard.py), unless its host is on JOBYARD_LLM_ALLOW_HOSTS. It is checked when it is
set (``refusal``: the API answers 422) and again on every connection a worker opens to it
(core/providers/guarded_http.py), since what a name resolves to can change after it was accepted.

Each worker process keeps the chain it built for a tenant (its clients and its breakers), and reads
the tenant's row on every job (one primary-key probe, in the job's transaction): while the row's
``updated_at`` is the one the chain was built from, the chain is used as it is; a changed (or
removed) configuration applies from the next job on, in every worker, without a restart.
"""

from __future__ import annotations

import functools
import threading
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from core.engine.job_types import Preload
from core.engine.jobs import utcnow
from core.errors import AddressRefused, DataKeyUnknown, NotResolved, SealedValueError, SettingsError
from core.platform.crypto import data_cipher, key_label
from core.platform.netguard import AllowList, SyncResolver, checked_addresses_sync, system_resolve_sync
from core.platform.redact import learn_secrets
from core.platform.settings import Settings
from core.platform.tables import tenant_llm as tl
from core.providers.llm import LlmChain, ProviderConfig, chain_for

log = structlog.get_logger(__name__)

#: The LLM client libraries (the openai SDK, some 35 MiB), which core/providers/llm.py imports at its
#: first call: loaded at boot instead by the worker processes of the job types that ask a chain.
LLM_CLIENTS = Preload("openai", "core.providers.guarded_http")

#: Providers in one tenant's chain, at most.
MAX_PROVIDERS = 8
#: A provider's name: it is shown on every reply (`provider`) and in log lines.
PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
#: Characters of an api key the API shows, to tell two keys apart; never more.
VISIBLE_KEY_CHARS = 4


def sealing_context(tenant: str, provider: str) -> str:
    """What a tenant's sealed api key is bound to: its field, its tenant and its provider."""
    return f"tenant_llm.api_key:{tenant}:{provider}"


class TenantLlmProvider(msgspec.Struct, kw_only=True):
    """A provider as the API shows it: whether its api key is set, never the key."""

    name: str
    #: Null: OpenAI's API (https://api.openai.com/v1).
    base_url: str | None
    #: Null: the job's `model`, else JOBYARD_LLM_MODEL.
    model: str | None
    api_key_set: bool
    #: The key's last characters, to tell which one is in use (null when unset, too short to show a
    #: part of, or sealed under a data key this API process does not hold).
    api_key_last4: str | None


class TenantLlm(msgspec.Struct, kw_only=True):
    """A tenant's chain as the API shows it."""

    tenant: str
    #: In the order they are tried.
    providers: list[TenantLlmProvider]
    #: The data key the api keys are sealed under (`jobyard data-key rotate` moves them).
    key_id: str
    created_at: datetime
    updated_at: datetime
    #: The API key that last set it.
    updated_by: uuid.UUID | None


@functools.cache
def allow_list(settings: Settings) -> AllowList:
    """JOBYARD_LLM_ALLOW_HOSTS, parsed; SettingsError names a bad entry."""
    try:
        return AllowList.parse(settings.llm_allow_hosts)
    except ValueError as exc:
        raise SettingsError(f"JOBYARD_LLM_ALLOW_HOSTS: {exc}") from None


def refusal(base_url: str, allow: AllowList, resolve: SyncResolver = system_resolve_sync) -> str | None:
    """Why the farm may not call ``base_url`` (as it resolves now), or None when it may. The answer
    never repeats the URL: it may hold credentials."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials: give the key as api_key (it is stored sealed)"
    if not parts.hostname:
        return "has no host"
    try:
        checked_addresses_sync(
            parts.hostname, port or (443 if parts.scheme == "https" else 80), allow, resolve
        )
    except AddressRefused as exc:
        return (
            f"refused: {exc}; a tenant's provider must be at a public address "
            "(JOBYARD_LLM_ALLOW_HOSTS lists the exceptions)"
        )
    except NotResolved as exc:
        return f"refused: {exc}"
    except ValueError:  # UnicodeError among them: a name IDNA cannot encode, a NUL in it
        return "has a host that is not a valid name"
    return None


def _view(row: Any) -> TenantLlm:
    m = row._mapping
    ring = data_cipher()
    shown = []
    for p in m["providers"]:
        sealed = p.get("api_key_sealed")
        last4: str | None = None
        if sealed is not None:
            try:
                key = ring.open(sealed, sealing_context(m["tenant"], p["name"]))
                learn_secrets(key)
                last4 = key[-VISIBLE_KEY_CHARS:] if len(key) > 2 * VISIBLE_KEY_CHARS else None
            except SealedValueError:
                pass
        shown.append(
            TenantLlmProvider(
                name=p["name"],
                base_url=p.get("base_url"),
                model=p.get("model"),
                api_key_set=sealed is not None,
                api_key_last4=last4,
            )
        )
    return TenantLlm(
        tenant=m["tenant"],
        providers=shown,
        key_id=m["key_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        updated_by=m["updated_by"],
    )


def _opened(row: Any) -> tuple[ProviderConfig, ...]:
    """The row's providers with their keys in clear; SealedValueError when one does not open."""
    m = row._mapping
    ring = data_cipher()
    providers = []
    for p in m["providers"]:
        sealed = p.get("api_key_sealed")
        key = ring.open(sealed, sealing_context(m["tenant"], p["name"])) if sealed is not None else None
        learn_secrets(key)
        providers.append(
            ProviderConfig(name=p["name"], base_url=p.get("base_url"), api_key=key, model=p.get("model"))
        )
    return tuple(providers)


def set_chain(
    conn: Connection, tenant: str, providers: list[ProviderConfig], *, by: uuid.UUID | None
) -> tuple[TenantLlm, bool]:
    """Give ``tenant`` its own chain, or replace it whole; returns it and whether it is new. The
    caller has checked the providers (names unique, base URLs allowed)."""
    learn_secrets(*(p.api_key for p in providers))
    ring = data_cipher()
    now = utcnow()
    stored = [
        {
            "name": p.name,
            "base_url": p.base_url,
            "model": p.model,
            "api_key_sealed": ring.seal(p.api_key, sealing_context(tenant, p.name)) if p.api_key else None,
        }
        for p in providers
    ]
    values = {"providers": stored, "key_id": ring.key_id, "updated_at": now, "updated_by": by}
    existed = conn.execute(sa.select(tl.c.tenant).where(tl.c.tenant == tenant).with_for_update()).first()
    row = conn.execute(
        pg_insert(tl)
        .values(tenant=tenant, created_at=now, **values)
        .on_conflict_do_update(index_elements=[tl.c.tenant], set_=values)
        .returning(*tl.c)
    ).one()
    return _view(row), existed is None


def get_chain(conn: Connection, tenant: str) -> TenantLlm | None:
    row = conn.execute(sa.select(tl).where(tl.c.tenant == tenant)).first()
    return _view(row) if row is not None else None


def delete_chain(conn: Connection, tenant: str) -> TenantLlm | None:
    """Remove ``tenant``'s own chain (its jobs ask the farm's again); what it was, or None."""
    row = conn.execute(sa.delete(tl).where(tl.c.tenant == tenant).returning(*tl.c)).first()
    return _view(row) if row is not None else None


# Per process: (settings, tenant) -> (the row's updated_at the chain was built from, the chain).
_chains: dict[tuple[Settings, str], tuple[datetime, LlmChain]] = {}
_chains_lock = threading.Lock()


def chain_of(conn: Connection, settings: Settings, tenant: str) -> LlmChain:
    """The chain ``tenant``'s jobs ask: its own, or the farm's. DataKeyUnknown (retried) when its api
    keys are sealed under a data key this process does not hold: its messages must not go to the
    farm's providers instead."""
    row = conn.execute(sa.select(tl).where(tl.c.tenant == tenant)).first()
    key = (settings, tenant)
    if row is None:
        with _chains_lock:
            _chains.pop(key, None)
        return chain_for(settings)
    with _chains_lock:
        cached = _chains.get(key)
    if cached is not None and cached[0] == row.updated_at:
        return cached[1]
    try:
        providers = _opened(row)
    except SealedValueError as exc:
        held = ", ".join(key_label(k) for k in sorted(data_cipher().key_ids))
        message = (
            f"tenant {tenant}'s LLM api keys {exc.args[0] if exc.args else 'do not open'} (this process "
            f"holds {held}): give every process that data key, or set the providers again"
        )
        log.error("tenant_llm_unopenable", tenant=tenant, detail=message)
        raise DataKeyUnknown(message) from None
    chain = LlmChain(settings, providers, allow=allow_list(settings), tenant=tenant)
    with _chains_lock:
        _chains[key] = (row.updated_at, chain)
    return chain
