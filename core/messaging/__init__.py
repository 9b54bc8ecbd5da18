"""WhatsApp messaging: the `whatsapp_message` job type, outbound records, opt-outs, quiet hours, and the inbound webhook."""
