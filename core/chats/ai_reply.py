"""The `ai_reply` job type: an assistant reply written into a chat, with the unread count bumped.

The handler runs inside the job's transaction: the user's message, the reply and the unread bump
commit together with the job's success, so a worker that dies after the LLM answered leaves no half
reply behind, and a retry writes the reply exactly once. The LLM call itself has no outside effect
beyond its cost, so repeating it after a crash is safe. The chat is the job's tenant's: its history
and its reply are that tenant's chat ``chat_id``, never another tenant's of the same id. The
providers asked are the tenant's own chain when it has one (core/chats/tenant_llm.py), else the
farm's; the stored reply records which provider answered.

With ``knowledge``, the message being answered (the job's ``message``, else the chat's latest user
message) is the question: the nearest documents of the tenant's collection
(core/embeddings/knowledge.py) are given to the model in a system message after the job's system
prompt, up to JOBYARD_KNOWLEDGE_MAX_CHARS characters, and the reply records which ones (their ids,
chunks and distances).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.chats.tenant_llm import LLM_CLIENTS, chain_of
from core.chats.unread import Id, UnreadCountPayload, apply_unread, ensure_chat
from core.embeddings.embed import Hit
from core.embeddings.knowledge import Knowledge, retrieve
from core.engine.declare import JobContext, job_type
from core.engine.jobs import utcnow
from core.platform.settings import Settings
from core.platform.tables import chat_messages
from core.providers.llm import LlmChain

#: What the model reads before the documents it is given.
KNOWLEDGE_HEADER = "Answer from these documents:"


class AiReplyPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    chat_id: Id
    user_id: Id
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=32_000)] | None = None
    system_prompt: Annotated[str, msgspec.Meta(max_length=32_000)] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=32_000)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    history_limit: Annotated[int, msgspec.Meta(ge=0, le=200)] = 20
    #: Answer from the nearest documents of one of the tenant's collections.
    knowledge: Knowledge | None = None

    def __post_init__(self) -> None:
        if self.message is None and self.history_limit == 0:
            raise ValueError("give a message, or a history_limit above 0 to reply to the chat so far")


@job_type(
    "ai_reply",
    payload=AiReplyPayload,
    max_retries=4,
    min_backoff_s=2.0,
    max_backoff_s=120.0,
    timeout_s=120.0,
    description="Ask an OpenAI-compatible chat API for a reply and post it in the chat.",
    # A message and a system prompt of up to 32,000 characters each, in up to 4-byte UTF-8.
    max_payload_bytes=320 * 1024,
    resources=(LLM_CLIENTS,),
)
def ai_reply(ctx: JobContext, payload: AiReplyPayload) -> dict[str, Any]:
    chain = chain_of(ctx.conn, ctx.settings, ctx.tenant)
    return reply(ctx.conn, ctx.tenant, payload, chain, ctx.claim.job_id, ctx.settings)


def history(conn: Connection, tenant: str, chat_id: str, limit: int) -> list[dict[str, str]]:
    """The tenant's chat's last ``limit`` messages, oldest first, as chat-completions messages."""
    if limit == 0:
        return []
    rows = conn.execute(
        sa.select(chat_messages.c.role, chat_messages.c.content)
        .where(chat_messages.c.chat_id == chat_id, chat_messages.c.tenant == tenant)
        .order_by(chat_messages.c.created_at.desc(), chat_messages.c.id.desc())
        .limit(limit)
    ).all()
    return [{"role": r.role, "content": r.content} for r in reversed(rows)]


def _store(conn: Connection, tenant: str, chat_id: str, **values: Any) -> uuid.UUID:
    message_id = uuid.uuid4()
    conn.execute(
        sa.insert(chat_messages).values(
            id=message_id, chat_id=chat_id, tenant=tenant, created_at=utcnow(), **values
        )
    )
    return message_id


def knowledge_message(hits: list[Hit], max_chars: int) -> tuple[str, list[Hit]]:
    """The system message giving the model ``hits``, nearest first, and the hits it holds: each
    document's id and chunk, then its text, while their characters fit in ``max_chars``; the first
    that does not fit is cut to the room left, and the rest are left out."""
    blocks: list[str] = []
    given: list[Hit] = []
    room = max_chars
    for hit in hits:
        if room <= 0:
            break
        block = f"[document {hit.id}, chunk {hit.chunk}]\n{hit.text}"
        blocks.append(block[:room])
        given.append(hit)
        room -= len(block)
    return "\n\n".join([KNOWLEDGE_HEADER, *blocks]), given


def _question(payload: AiReplyPayload, messages: list[dict[str, str]]) -> str | None:
    """The message being answered: the job's, else the chat's latest user message."""
    if payload.message is not None:
        return payload.message
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), None)


def _with_knowledge(
    conn: Connection, settings: Settings, tenant: str, payload: AiReplyPayload, messages: list[dict[str, str]]
) -> dict[str, Any] | None:
    """Give the model the nearest documents, after the system prompt; what was given, to record."""
    if payload.knowledge is None:
        return None
    question = _question(payload, messages)
    hits = retrieve(conn, settings, tenant, payload.knowledge, question) if question else []
    content, given = knowledge_message(hits, settings.knowledge_max_chars)
    if given:
        messages.insert(1 if payload.system_prompt else 0, {"role": "system", "content": content})
    return {
        "collection": payload.knowledge.collection,
        "documents": [{"id": h.id, "chunk": h.chunk, "distance": round(1.0 - h.score, 6)} for h in given],
    }


def reply(
    conn: Connection,
    tenant: str,
    payload: AiReplyPayload,
    chain: LlmChain,
    job_id: uuid.UUID,
    settings: Settings,
    withhold: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """Write the user's message (if any) and the assistant's reply in ``tenant``'s chat, and bump the
    user's unread count there. ``withhold`` (the assistant's guardrails) may say why a reply must
    not be given: it is then not stored, and the result names the reason (``withheld``)."""
    ensure_chat(conn, tenant, payload.chat_id)
    messages = history(conn, tenant, payload.chat_id, payload.history_limit)
    if payload.message is not None:
        messages.append({"role": "user", "content": payload.message})
    if payload.system_prompt:
        messages.insert(0, {"role": "system", "content": payload.system_prompt})
    knowledge = _with_knowledge(conn, settings, tenant, payload, messages)
    options: dict[str, Any] = {}
    if payload.max_tokens is not None:
        options["max_tokens"] = payload.max_tokens
    if payload.temperature is not None:
        options["temperature"] = payload.temperature
    completion = chain.complete(messages, model=payload.model, **options)

    if payload.message is not None:
        _store(
            conn,
            tenant,
            payload.chat_id,
            role="user",
            author_id=payload.user_id,
            content=payload.message,
            job_id=job_id,
        )
    usage = {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
    reason = withhold(completion.content) if withhold is not None else None
    if reason is not None:
        return {"message_id": None, "content": completion.content, "withheld": reason, "usage": usage}
    message_id = _store(
        conn,
        tenant,
        payload.chat_id,
        role="assistant",
        content=completion.content,
        model=completion.model,
        provider=completion.provider,
        usage=usage,
        job_id=job_id,
        knowledge=knowledge,
    )
    apply_unread(
        conn,
        tenant,
        UnreadCountPayload(chat_id=payload.chat_id, user_id=payload.user_id, op="increment", by=1),
    )
    return {
        "message_id": str(message_id),
        "content": completion.content,
        "model": completion.model,
        "provider": completion.provider,
        "usage": usage,
    } | ({"knowledge": knowledge} if knowledge is not None else {})
