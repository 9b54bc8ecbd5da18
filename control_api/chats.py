"""What the workers wrote about chats: messages and unread counters, and chats flagged for a human.

A key reads its own tenant's chats and counters (an admin key every tenant's, each item naming its
tenant); another tenant's chat reads as one that does not exist. Marking a chat read writes the
key's own tenant's counter, even for an admin key: a chat id names a chat within one tenant. A
single chat (its flag, its WhatsApp conversation) is the key's tenant's; an admin key names another
with ``?tenant=``. Clearing a flag needs `ops` and is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import requires
from control_api.tenants import reached_tenant
from core.access.keys import ApiKey
from core.chats.history import ChatMessage, list_messages
from core.chats.inbox import Chat, NeedsHuman, clear_flag, flagged, get_chats
from core.chats.unread import mark_read, unread_for_user
from core.engine import audit
from core.errors import ChatNotFound
from core.messaging.conversations import SERVICE_WINDOW, by_chat
from core.platform.crypto import mask_phone
from core.platform.db import transaction
from core.platform.pagination import DEFAULT_LIMIT, MAX_LIMIT
from core.platform.tenants import DEFAULT_TENANT

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class MessageList(msgspec.Struct):
    items: list[ChatMessage]
    next_cursor: str | None


class UnreadItem(msgspec.Struct):
    chat_id: str
    unread: int
    #: Whose chat it is.
    tenant: str = DEFAULT_TENANT


class UnreadOut(msgspec.Struct):
    items: list[UnreadItem]
    total: int


class ReadIn(msgspec.Struct, forbid_unknown_fields=True):
    user_id: Id


class WhatsAppConversation(msgspec.Struct, kw_only=True):
    #: The business number written to (Meta's phone number id; "" for the farm's without one set).
    phone_number_id: str
    #: The customer, masked.
    customer: str
    #: When the customer last wrote (the farm's clock).
    last_inbound_at: datetime
    #: Free-form text may be sent until then (WhatsApp's 24-hour customer service window).
    window_closes_at: datetime


class ChatOut(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    created_at: datetime
    #: Set when ops must look at the chat: why, and since when.
    needs_human: NeedsHuman | None
    #: The customer's WhatsApp conversation the chat holds, if it is one.
    whatsapp: WhatsAppConversation | None = None


class ChatListOut(msgspec.Struct):
    items: list[Chat]


def _chat_tenant(key: ApiKey, tenant: str | None) -> str:
    return reached_tenant(key, tenant or key.tenant, ChatNotFound, "chat of that id")


class ChatsController(Controller):
    path = "/v1"
    tags = ["chats"]

    @get("/chats/{chat_id:str}/messages", guards=[requires("jobs:read")], sync_to_thread=True)
    def messages(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        chat_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MessageList:
        with transaction(state.settings) as conn:
            items, next_cursor = list_messages(conn, chat_id, limit, cursor, request.user.reach)
        return MessageList(items, next_cursor)

    @get("/chats", guards=[requires("jobs:read")], sync_to_thread=True)
    def flagged_chats(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> ChatListOut:
        """The chats flagged for a human (a customer asked for a person, a reply was withheld),
        longest waiting first."""
        with transaction(state.settings) as conn:
            return ChatListOut(flagged(conn, request.user.reach, limit))

    @get("/chats/{chat_id:str}", guards=[requires("jobs:read")], sync_to_thread=True)
    def chat(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        chat_id: FromPath[str],
        tenant: FromQuery[str | None] = None,
    ) -> ChatOut:
        """A chat: whether it is flagged for a human, and the WhatsApp conversation it holds."""
        target = _chat_tenant(request.user, tenant)
        with transaction(state.settings) as conn:
            found = get_chats(conn, chat_id, target)
            conversation = by_chat(conn, target, chat_id) if found else None
        if not found:
            raise ChatNotFound(f"no chat {chat_id[:200]!r}")
        (chat,) = found
        whatsapp = None
        if conversation is not None:
            conv, customer = conversation
            whatsapp = WhatsAppConversation(
                phone_number_id=conv.phone_number_id,
                customer=mask_phone(customer),
                last_inbound_at=conv.last_inbound_at,
                window_closes_at=conv.last_inbound_at + SERVICE_WINDOW,
            )
        return ChatOut(
            id=chat.id,
            tenant=chat.tenant,
            created_at=chat.created_at,
            needs_human=chat.needs_human,
            whatsapp=whatsapp,
        )

    @delete("/chats/{chat_id:str}/needs-human", guards=[requires("ops")], sync_to_thread=True)
    def clear_needs_human(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        chat_id: FromPath[str],
        tenant: FromQuery[str | None] = None,
    ) -> None:
        """Clear a chat's flag for a human (a person has taken it over); audited."""
        key = request.user
        target = _chat_tenant(key, tenant)
        with transaction(state.settings) as conn:
            cleared = clear_flag(conn, target, chat_id)
            if not cleared:
                raise ChatNotFound(f"no chat {chat_id[:200]!r} flagged for a human")
            (was,) = cleared
            audit.record(
                conn,
                tenant=target,
                actor=key.name,
                action="chat_needs_human_clear",
                selection={"tenant": target, "chat_id": chat_id},
                reason=f"flag cleared: {was.needs_human.reason if was.needs_human else ''}",
                counts={"cleared": 1},
            )

    @get("/unread", guards=[requires("jobs:read")], sync_to_thread=True)
    def unread(
        self,
        request: Request[ApiKey, Any, Any],
        state: State,
        user_id: Annotated[str, QueryParameter(min_length=1, max_length=200)],
    ) -> UnreadOut:
        with transaction(state.settings) as conn:
            found: dict[str, Any] = unread_for_user(conn, user_id, request.user.reach)
        return msgspec.convert(found, UnreadOut)

    @post("/chats/{chat_id:str}/read", guards=[requires("jobs:write")], sync_to_thread=True, status_code=200)
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, chat_id: FromPath[str], data: JSONBody[ReadIn]
    ) -> UnreadItem:
        with transaction(state.settings) as conn:
            return msgspec.convert(mark_read(conn, request.user.tenant, chat_id, data.user_id), UnreadItem)
