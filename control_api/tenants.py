"""/v1/tenants/{tenant}/whatsapp: a tenant's own WhatsApp number (phone number id, access token,
app secret, verify token), set, read and removed by an `ops` key of that tenant or an `admin` key.

The secrets are write-only: stored sealed (core/messaging/numbers.py), never answered; the answer
says which are set and the access token's last four characters. Another tenant's number answers 404
to a key that does not reach it, whatever the method, exactly as a tenant without one. Every change
is in the audit log (without the secrets).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from control_api.auth import requires
from core.access.keys import ApiKey
from core.engine import audit
from core.errors import WhatsAppNumberNotFound
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


def _reached(key: ApiKey, tenant: str) -> str:
    """``tenant`` if ``key`` reaches it; WhatsAppNumberNotFound otherwise, as if it had none."""
    if not reaches(key.reach, tenant) or not TENANT_SHAPE.fullmatch(tenant):
        raise WhatsAppNumberNotFound(f"tenant {tenant[:63]!r} has no WhatsApp number of its own")
    return tenant


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
        target = _reached(key, tenant)
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

    @get("/", guards=OPS, sync_to_thread=True, summary="A tenant's own WhatsApp number (secrets not shown)")
    def read(
        self, request: Request[ApiKey, None, State], state: State, tenant: FromPath[str]
    ) -> TenantWhatsApp:
        target = _reached(request.user, tenant)
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
        target = _reached(key, tenant)
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
