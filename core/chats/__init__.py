"""Chats: unread counters (`unread_count`), AI replies (`ai_reply`), and the chat history the API shows."""
