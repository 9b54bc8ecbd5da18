"""/v1/assistants/whatsapp: a tenant's WhatsApp assistant (core/assistant/config.py), set whole,
read and removed by an `ops` key, as a tenant's own number and LLM chain are (control_api/tenants.py).

The assistant is the key's tenant's; an `admin` key acts for another with ``?tenant=``. A tenant the
key does not reach answers 404, exactly as a tenant without an assistant. Every change is in the
audit log.
"""

from __future__ import annotations

from litestar import Controller, Request, Response, delete, get, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, JSONBody

from control_api.auth import OPS_READ, requires
from control_api.tenants import reached_tenant
from core.access.keys import ApiKey
from core.assistant.config import Assistant, AssistantIn, delete_assistant, get_assistant, set_assistant
from core.engine import audit
from core.errors import AssistantNotFound
from core.platform.db import transaction

OPS = [requires("ops")]


def _target(key: ApiKey, tenant: str | None) -> str:
    return reached_tenant(key, tenant or key.tenant, AssistantNotFound, "WhatsApp assistant")


def _summary(data: AssistantIn) -> dict[str, int]:
    """What the audit entry counts (the prompt and the phrases themselves are not repeated there)."""
    return {
        "enabled": int(data.enabled),
        "knowledge": int(data.knowledge is not None),
        "business_hours": int(data.business_hours is not None),
        "handoff_words": len(data.handoff_words),
        "forbidden_phrases": len(data.forbidden_phrases),
        "max_reply_chars": data.max_reply_chars,
    }


class AssistantsController(Controller):
    path = "/v1/assistants/whatsapp"
    tags = ["assistants"]

    @put(
        "/",
        guards=OPS,
        sync_to_thread=True,
        summary="Set the WhatsApp assistant: auto-replies, knowledge, business hours, handoff, guardrails",
        responses={201: ResponseSpec(Assistant, description="The tenant had no assistant")},
    )
    def put(
        self,
        request: Request[ApiKey, None, State],
        state: State,
        data: JSONBody[AssistantIn],
        tenant: FromQuery[str | None] = None,
    ) -> Response[Assistant]:
        key = request.user
        target = _target(key, tenant)
        with transaction(state.settings) as conn:
            assistant, created = set_assistant(conn, target, data, by=key.id)
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="assistant_set",
                selection={"tenant": target, "channel": "whatsapp"},
                reason="the WhatsApp assistant " + ("set" if created else "replaced"),
                counts={"created": int(created), **_summary(data)},
            )
        return Response(assistant, status_code=201 if created else 200)

    @get("/", guards=[OPS_READ], sync_to_thread=True, summary="The WhatsApp assistant's configuration")
    def read(
        self, request: Request[ApiKey, None, State], state: State, tenant: FromQuery[str | None] = None
    ) -> Assistant:
        target = _target(request.user, tenant)
        with transaction(state.settings) as conn:
            found = get_assistant(conn, target)
        if found is None:
            raise AssistantNotFound(f"tenant {target} has no WhatsApp assistant")
        return found

    @delete(
        "/",
        guards=OPS,
        sync_to_thread=True,
        status_code=200,
        summary="Remove the WhatsApp assistant (customers' messages are still stored, not answered)",
    )
    def remove(
        self, request: Request[ApiKey, None, State], state: State, tenant: FromQuery[str | None] = None
    ) -> Assistant:
        """Answers the assistant as it was."""
        key = request.user
        target = _target(key, tenant)
        with transaction(state.settings) as conn:
            gone = delete_assistant(conn, target)
            if gone is None:
                raise AssistantNotFound(f"tenant {target} has no WhatsApp assistant")
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="assistant_delete",
                selection={"tenant": target, "channel": "whatsapp"},
                reason="the WhatsApp assistant removed: customers' messages are no longer answered",
                counts={"deleted": 1},
            )
        return gone
