"""A customer's WhatsApp message, from a verified webhook body: stored in the customer's conversation
and, when the tenant's assistant is on, answered or handed to a human.

In the webhook's transaction, for each message (core/messaging/webhook.py ``inbound``):

1. The conversation of (the number's tenant, the business number, the customer) records the time
   the customer wrote (WhatsApp's service window, core/messaging/conversations.py).
2. The message is stored in the conversation's chat with its WhatsApp id, and the inbox's unread
   count goes up: a message Meta delivers again is found by its id, and nothing more is done.
3. Nothing is answered automatically for a STOP (it opts the customer out), a message without words
   (an image...), a tenant without an enabled assistant, a message holding a handoff word (the chat
   is flagged for a human instead), or outside business hours (the away message, if any, at most
   once a day per conversation).
4. Otherwise a `whatsapp_reply` job answers it (core/assistant/reply.py), keyed by the message's id.

The jobs are committed with the messages and published after the commit (the sweeper publishes any
the publish loses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from core.assistant.config import Assistant, get_assistant, handoff_word, is_open
from core.assistant.reply import send_job
from core.chats.inbox import flag, store_inbound
from core.engine.broker import Publication
from core.engine.jobs import NewJob, insert_jobs, publication, utcnow
from core.messaging.conversations import Conversation, mark_away_sent, touch
from core.messaging.webhook import Inbound


@dataclass
class Received:
    #: Customer messages stored (a message delivered again is not counted).
    messages: int = 0
    #: Replies started (`whatsapp_reply` jobs) and away messages sent.
    replies: int = 0
    #: Conversations flagged for a human because the customer asked for one.
    handoffs: int = 0
    #: The new jobs' messages, to publish after the commit.
    publications: list[Publication] = field(default_factory=list)


def receive(conn: Connection, messages: list[Inbound]) -> Received:
    """Store and answer the customers' messages of one webhook body, in the caller's transaction."""
    got = Received()
    assistants: dict[str, Assistant | None] = {}
    new: list[NewJob] = []
    for m in messages:
        tenant = m.number.owner
        conversation = touch(conn, tenant, m.number.phone_number_id or "", m.customer, m.at)
        content = m.text if m.text is not None else f"[{m.kind} message]"
        if not store_inbound(conn, tenant, conversation.chat_id, m.message_id, content):
            continue
        got.messages += 1
        if m.stop or m.text is None or not m.text.strip():
            continue
        if tenant not in assistants:
            assistants[tenant] = get_assistant(conn, tenant)
        assistant = assistants[tenant]
        if assistant is None or not assistant.enabled:
            continue
        job = _answer(conn, assistant, conversation, m, got)
        if job is not None:
            new.append(job)
            got.replies += 1
    got.publications = [publication(e) for e in insert_jobs(conn, new) if e.message_id is not None]
    return got


def _answer(
    conn: Connection, assistant: Assistant, conversation: Conversation, m: Inbound, got: Received
) -> NewJob | None:
    """The job answering the message, or None (flagged for a human, or outside business hours)."""
    assert m.text is not None
    word = handoff_word(assistant.handoff_words, m.text)
    if word is not None:
        flag(conn, conversation.tenant, conversation.chat_id, f"the customer asked for a person ({word!r})")
        got.handoffs += 1
        return None
    now = utcnow()
    hours = assistant.business_hours
    if hours is not None and not is_open(hours, now):
        if hours.away_message is None or not mark_away_sent(conn, conversation, now):
            return None
        key = f"whatsapp-away:{m.message_id}"
        return send_job(conversation.tenant, m.customer, hours.away_message, m.message_id, key)
    payload = {"chat_id": conversation.chat_id, "to": m.customer, "in_reply_to": m.message_id}
    return NewJob(
        type="whatsapp_reply",
        payload=payload,
        idempotency_key=f"whatsapp-reply:{m.message_id}",
        business_key=f"whatsapp:{m.message_id}",
        tenant=conversation.tenant,
    )
