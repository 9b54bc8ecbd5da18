"""/v1/tenants/{tenant}/whatsapp: a tenant's own WhatsApp number (phone number id, access token,
app secret, verify token), and /v1/tenants/{tenant}/llm: its own LLM provider chain (names, base URLs,
api keys, models), each set, read and removed by an `ops` key of that tenant or an `admin` key.

The secrets are write-only: stored sealed (core/messaging/numbers.py, core/chats/tenant_llm.py),
never answered; the answer says which are set and each token's or key's last four characters. Another
tenant's number or chain answers 404 to a key that does not reach it, whatever the method, exactly as
a tenant without one. Every change is in the audit log (without the secrets). A provider's base URL
must be an address the farm may call (public, or on JOBYARD_LLM_ALLOW_HOSTS): 422 otherwise.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from control_api.auth import OPS_READ, requires
from core.access.keys import ApiKey
from core.chats.tenant_llm import (
    MAX_PROVIDERS,
    PROVIDER_NAME_PATTERN,
    TenantLlm,
    allow_list,
    delete_chain,
    get_chain,
    refusal,
    set_chain,
)
from core.engine import audit
from core.errors import InvalidInput, NotFound, TenantLlmNotFound, WhatsAppNumberNotFound
from core.messaging.numbers import (
    PHONE_NUMBER_ID_PATTERN,
    TenantWhatsApp,
    delete_number,
    get_number,
    set_number,
)
from core.platform.db import transaction
from core.platform.redact import learn_secrets
from core.platform.tenants import TENANT_SHAPE, reaches
from core.providers.llm import ProviderConfig

OPS = [requires("ops")]
#: Printable ASCII without spaces, as Meta's tokens and secrets are (an app secret is 32 hex digits,
#: a token far longer); 16 characters at least, so that the log redactor, which searches every line
#: for each one, cannot be taught a word that log lines are made of.
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=4096, pattern=r"^[\x21-\x7e]+$")]


class WhatsAppNumberIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Meta's id of the business phone number (digits), not the phone number itself.
    phone_number_id: Annotated[str, msgspec.Meta(pattern=PHONE_NUMBER_ID_PATTERN)]
    #: The Cloud API access token the tenant's sends carry (a system user's token).
    access_token: Secret
    #: The Meta app's secret: webhooks for the number are signed with it.
    app_secret: Secret
    #: The token Meta's webhook handshake presents; absent: the farm's (or another tenant's) is used.
    verify_token: Secret | None = None


def reached_tenant(key: ApiKey, tenant: str, missing: type[NotFound], what: str) -> str:
    """``tenant`` if ``key`` reaches it; ``missing`` otherwise, as if the tenant had no ``what`` of
    its own (the same answer for a tenant the key does not reach and for one without it)."""
    if not reaches(key.reach, tenant) or not TENANT_SHAPE.fullmatch(tenant):
        raise missing(f"tenant {tenant[:63]!r} has no {what} of its own")
    return tenant


def _number_reached(key: ApiKey, tenant: str) -> str:
    return reached_tenant(key, tenant, WhatsAppNumberNotFound, "WhatsApp number")


class TenantWhatsAppController(Controller):
    path = "/v1/tenants/{tenant:str}/whatsapp"
    tags = ["tenants"]

    @put(
        "/",
        guards=OPS,
        sync_to_thread=True,
        summary="Set a tenant's own WhatsApp number (its secrets are never shown again)",
        responses={201: ResponseSpec(TenantWhatsApp, description="The tenant had no number of its own")},
    )
    def put(
        self,
        request: Request[ApiKey, None, State],
        state: State,
        tenant: FromPath[str],
        data: JSONBody[WhatsAppNumberIn],
    ) -> Response[TenantWhatsApp]:
        key = request.user
        target = _number_reached(key, tenant)
        # Before anything else is done with them, so not even an error of this request can log them.
        learn_secrets(data.access_token, data.app_secret, data.verify_token)
        with transaction(state.settings) as conn:
            number, created = set_number(
                conn,
                target,
                phone_number_id=data.phone_number_id,
                token=data.access_token,
                app_secret=data.app_secret,
                verify_token=data.verify_token,
                by=key.id,
                farm_phone_number_id=state.settings.whatsapp_phone_number_id,
            )
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="whatsapp_number_set",
                selection={"tenant": target, "phone_number_id": data.phone_number_id},
                reason="the tenant's own WhatsApp number " + ("set" if created else "replaced"),
                counts={"created": int(created), "verify_token_set": int(data.verify_token is not None)},
            )
        return Response(number, status_code=201 if created else 200)

    @get(
        "/",
        guards=[OPS_READ],
        sync_to_thread=True,
        summary="A tenant's own WhatsApp number (secrets not shown)",
    )
    def read(
        self, request: Request[ApiKey, None, State], state: State, tenant: FromPath[str]
    ) -> TenantWhatsApp:
        target = _number_reached(request.user, tenant)
        with transaction(state.settings) as conn:
            found = get_number(conn, target)
        if found is None:
            raise WhatsAppNumberNotFound(f"tenant {target} has no WhatsApp number of its own")
        return found

    @delete(
        "/",
        guards=OPS,
        sync_to_thread=True,
        summary="Remove a tenant's own WhatsApp number (its jobs send through the farm's again)",
    )
    def remove(self, request: Request[ApiKey, None, State], state: State, tenant: FromPath[str]) -> None:
        key = request.user
        target = _number_reached(key, tenant)
        with transaction(state.settings) as conn:
            gone = delete_number(conn, target)
            if gone is None:
                raise WhatsAppNumberNotFound(f"tenant {target} has no WhatsApp number of its own")
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="whatsapp_number_delete",
                selection={"tenant": target, "phone_number_id": gone.phone_number_id},
                reason="the tenant's own WhatsApp number removed: its jobs send through the farm's",
                counts={"deleted": 1},
            )


class LlmProviderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One provider, shaped as an entry of JOBYARD_LLM_PROVIDERS."""

    #: Unique in the chain; shown on each reply (`provider`).
    name: Annotated[str, msgspec.Meta(pattern=PROVIDER_NAME_PATTERN)]
    #: Any OpenAI-compatible API; absent: OpenAI's. Must be an address the farm may call.
    base_url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    #: Absent: no key is sent (a local server that takes any).
    api_key: Secret | None = None
    #: Absent: the job's `model`, else JOBYARD_LLM_MODEL.
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class TenantLlmIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Tried in this order; a provider whose breaker is open is passed over.
    providers: Annotated[list[LlmProviderIn], msgspec.Meta(min_length=1, max_length=MAX_PROVIDERS)]


def _chain_reached(key: ApiKey, tenant: str) -> str:
    return reached_tenant(key, tenant, TenantLlmNotFound, "LLM provider chain")


def _checked(state: State, data: TenantLlmIn) -> list[ProviderConfig]:
    """The providers, once every name is unique and every base URL is one the farm may call; 422
    naming each field otherwise."""
    problems: list[dict[str, str]] = []
    seen: set[str] = set()
    allow = allow_list(state.settings)
    for i, p in enumerate(data.providers):
        if p.name in seen:
            problems.append({"field": f"providers[{i}].name", "message": f"{p.name!r} is named twice"})
        seen.add(p.name)
        why = refusal(p.base_url, allow) if p.base_url is not None else None
        if why is not None:
            problems.append({"field": f"providers[{i}].base_url", "message": f"base_url {why}"})
    if problems:
        raise InvalidInput("the provider chain has invalid fields", details=problems)
    return [
        ProviderConfig(name=p.name, base_url=p.base_url, api_key=p.api_key, model=p.model)
        for p in data.providers
    ]


class TenantLlmController(Controller):
    path = "/v1/tenants/{tenant:str}/llm"
    tags = ["tenants"]

    @put(
        "/",
        guards=OPS,
        sync_to_thread=True,
        summary="Set a tenant's own LLM provider chain (its api keys are never shown again)",
        responses={201: ResponseSpec(TenantLlm, description="The tenant had no chain of its own")},
    )
    def put(
        self,
        request: Request[ApiKey, None, State],
        state: State,
        tenant: FromPath[str],
        data: JSONBody[TenantLlmIn],
    ) -> Response[TenantLlm]:
        key = request.user
        # Before anything else is done with them, so not even an error of this request can log them.
        learn_secrets(*(p.api_key for p in data.providers))
        target = _chain_reached(key, tenant)
        providers = _checked(state, data)
        with transaction(state.settings) as conn:
            chain, created = set_chain(conn, target, providers, by=key.id)
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="llm_providers_set",
                selection={"tenant": target, "providers": [p.name for p in providers]},
                reason="the tenant's own LLM provider chain " + ("set" if created else "replaced"),
                counts={
                    "created": int(created),
                    "providers": len(providers),
                    "api_keys_set": sum(p.api_key is not None for p in providers),
                },
            )
        return Response(chain, status_code=201 if created else 200)

    @get(
        "/",
        guards=[OPS_READ],
        sync_to_thread=True,
        summary="A tenant's own LLM provider chain (api keys not shown)",
    )
    def read(self, request: Request[ApiKey, None, State], state: State, tenant: FromPath[str]) -> TenantLlm:
        target = _chain_reached(request.user, tenant)
        with transaction(state.settings) as conn:
            found = get_chain(conn, target)
        if found is None:
            raise TenantLlmNotFound(f"tenant {target} has no LLM provider chain of its own")
        return found

    @delete(
        "/",
        guards=OPS,
        sync_to_thread=True,
        summary="Remove a tenant's own LLM provider chain (its jobs ask the farm's again)",
    )
    def remove(self, request: Request[ApiKey, None, State], state: State, tenant: FromPath[str]) -> None:
        key = request.user
        target = _chain_reached(key, tenant)
        with transaction(state.settings) as conn:
            gone = delete_chain(conn, target)
            if gone is None:
                raise TenantLlmNotFound(f"tenant {target} has no LLM provider chain of its own")
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="llm_providers_delete",
                selection={"tenant": target, "providers": [p.name for p in gone.providers]},
                reason="the tenant's own LLM provider chain removed: its jobs ask the farm's",
                counts={"deleted": 1},
            )
