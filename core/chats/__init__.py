"""Chats: unread counters (`unread_count`), AI replies (`ai_reply`, optionally from a collection's
nearest documents) with each tenant's own LLM provider chain (`tenant_llm`), and the chat history the
API shows."""
