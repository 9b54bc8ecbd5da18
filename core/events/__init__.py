"""What callers are told when their jobs, messages and counters change: events, webhooks, streams.

Postgres triggers (migration 0024) write an event in the transaction of the change, for tenants
somebody listens to, with a delivery row per webhook endpoint that asked for it:

- ``log``: reading events in commit order (streams, waits), keeping a tenant's events recorded
  while it has streams, and an event as callers see it.
- ``signing``: Standard Webhooks signatures and secrets.
- ``endpoints``: a tenant's webhook endpoints (create, change, rotate the secret, delete).
- ``delivery``: the scheduler's senders: take due deliveries in order, send, record, retry, disable.
- ``deliveries``: the delivery log and the redrive of dead deliveries.
"""
