"""The `whatsapp_reply` job type: the assistant's answer to a customer's WhatsApp message.

One job per customer message (its idempotency key names the message): it asks the tenant's LLM
chain for a reply to the conversation so far, with the assistant's system prompt and the nearest
documents of its knowledge collection (`ai_reply`'s RAG; unless the customer wrote again since: that
message's job answers both, ``superseded``), checks the reply against the guardrails, stores it in the conversation's chat and enqueues the `whatsapp_message`
that sends it, all in one transaction that holds the job's claim; the send is published after the
commit. A reply the guardrails withhold is neither stored nor sent: the chat is flagged instead.

Exactly once: a retry after the commit (the worker died before its success was recorded) finds the
reply this job stored and the send job by its idempotency key, and asks the model nothing.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, cast

import dramatiq
import msgspec
import sqlalchemy as sa
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Connection

from core.assistant.config import Assistant, breach, get_assistant
from core.chats.ai_reply import AiReplyPayload, reply
from core.chats.inbox import CUSTOMER, flag
from core.chats.tenant_llm import LLM_CLIENTS, chain_of
from core.chats.unread import Id
from core.engine.declare import JobContext, job_type
from core.engine.jobs import NewJob, insert_jobs, publication, publish_after_commit
from core.messaging.optouts import E164_PATTERN
from core.messaging.send import still_ours
from core.messaging.webhook import WHATSAPP_MESSAGE_ID_PATTERN
from core.platform.db import transaction
from core.platform.tables import chat_messages

#: Messages of the conversation the model sees, the customer's last one included.
HISTORY = 20


class WhatsAppReplyPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: The conversation's chat (``wa:...``), holding the customer's message.
    chat_id: Id
    #: The customer, E.164 (sealed at rest).
    to: Annotated[str, msgspec.Meta(pattern=E164_PATTERN)]
    #: The customer's message answered (its WhatsApp id).
    in_reply_to: Annotated[str, msgspec.Meta(pattern=WHATSAPP_MESSAGE_ID_PATTERN)]


def send_job(tenant: str, to: str, text: str, in_reply_to: str, key: str) -> NewJob:
    """The `whatsapp_message` answering a customer's message: no quiet hours (the customer just
    wrote), and the customer's service window required."""
    payload = {"to": to, "text": text, "in_reply_to": in_reply_to, "respect_quiet_hours": False}
    return NewJob(type="whatsapp_message", payload=payload, idempotency_key=key, tenant=tenant)


@job_type(
    "whatsapp_reply",
    payload=WhatsAppReplyPayload,
    # It publishes the send after its own commit.
    transactional=False,
    max_retries=4,
    min_backoff_s=2.0,
    max_backoff_s=120.0,
    timeout_s=120.0,
    description="Answer a customer's WhatsApp message with the assistant's AI reply, within its guardrails.",
    sealed_fields=("to",),
    resources=(LLM_CLIENTS,),
)
def whatsapp_reply(ctx: JobContext, payload: WhatsAppReplyPayload) -> dict[str, Any]:
    claim, tenant = ctx.claim, ctx.tenant
    with transaction(ctx.settings) as conn:
        still_ours(conn, claim)
        earlier = conn.execute(
            sa.select(chat_messages.c.id, chat_messages.c.content).where(
                chat_messages.c.job_id == claim.job_id,
                chat_messages.c.tenant == tenant,
                chat_messages.c.role == "assistant",
            )
        ).first()
        if earlier is not None:
            message_id, content = str(earlier.id), earlier.content
        elif _superseded(conn, tenant, payload):
            return {
                "status": "superseded",
                "reason": "the customer wrote again: that message's reply answers both",
            }
        else:
            assistant = get_assistant(conn, tenant)
            if assistant is None or not assistant.enabled:
                return {"status": "skipped", "reason": "the tenant's WhatsApp assistant is not enabled"}
            answer = _ask(conn, ctx, payload, assistant)
            if answer.get("withheld"):
                reason = f"reply withheld: {answer['withheld']}"
                flag(conn, tenant, payload.chat_id, reason)
                return {"status": "withheld", "reason": reason, "content": answer["content"]}
            message_id, content = answer["message_id"], answer["content"]
        key = f"whatsapp-reply-send:{payload.in_reply_to}"
        (send,) = insert_jobs(conn, [send_job(tenant, payload.to, content, payload.in_reply_to, key)])
    if send.message_id is not None:
        publish_after_commit(cast(RedisBroker, dramatiq.get_broker()), [publication(send)])
    return {"status": "replied", "message_id": message_id, "send_job_id": str(send.job.id)}


def _superseded(conn: Connection, tenant: str, payload: WhatsAppReplyPayload) -> bool:
    """Whether the customer wrote again after the message this job answers: the later message's job
    answers the conversation so far, so a customer who sends three messages in a row gets one reply."""
    m = chat_messages.c
    answered = (
        sa.select(m.created_at)
        .where(m.tenant == tenant, m.chat_id == payload.chat_id, m.external_id == payload.in_reply_to)
        .scalar_subquery()
    )
    newer = sa.select(m.id).where(
        m.tenant == tenant, m.chat_id == payload.chat_id, m.role == "user", m.created_at > answered
    )
    return conn.execute(newer.limit(1)).first() is not None


def _ask(
    conn: Connection, ctx: JobContext, payload: WhatsAppReplyPayload, assistant: Assistant
) -> dict[str, Any]:
    asked = AiReplyPayload(
        chat_id=payload.chat_id,
        user_id=CUSTOMER,
        system_prompt=assistant.system_prompt,
        history_limit=HISTORY,
        knowledge=assistant.knowledge,
    )
    chain = chain_of(conn, ctx.settings, ctx.tenant)
    withhold = functools.partial(breach, assistant)
    return reply(conn, ctx.tenant, asked, chain, ctx.claim.job_id, ctx.settings, withhold=withhold)
