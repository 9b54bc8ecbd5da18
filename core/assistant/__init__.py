"""The assistant: answers customers' WhatsApp messages with an AI reply, within WhatsApp's rules.

A layer above the features it joins (chats: the conversation, the reply, the flags; messaging: the
webhook, the conversations' service window, the send): config (a tenant's assistant, handoff words,
business hours, guardrails), inbound (a customer's message stored and answered, or flagged), reply
(the `whatsapp_reply` job type: the reply asked for, checked, stored and sent).
"""
