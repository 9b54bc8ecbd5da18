"""What the workers wrote about chats: messages and unread counters.

A key reads its own tenant's chats and counters (an admin key every tenant's, each item naming its
tenant); another tenant's chat reads as one that does not exist. Marking a chat read writes the
key's own tenant's counter, even for an admin key: a chat id names a chat within one tenant.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from control_api.auth import requires
from core.access.keys import ApiKey
from core.chats.history import ChatMessage, list_messages
from core.chats.unread import mark_read, unread_for_user
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
