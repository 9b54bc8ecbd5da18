"""Chats: unread counters (`unread_count`), AI replies (`ai_reply`, optionally from a collection's
nearest documents) with each tenant's own LLM provider chain (`tenant_llm`), the chat history the API
shows, and the inbox (`inbox`: messages from outside the farm stored once, chats flagged for a
human)."""
