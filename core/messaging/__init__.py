"""WhatsApp messaging: the `whatsapp_message` job type, outbound records, opt-outs, quiet hours, the
inbound webhook, and customers' conversations (the 24-hour service window)."""
