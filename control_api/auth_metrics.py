"""What bad keys cost, for /metrics: lookups that reached Postgres (by what they found) and requests
refused at authentication (by why). A flood of random keys shows as refusals, and as at most one
lookup per distinct key."""

from __future__ import annotations

from prometheus_client import Counter

KEY_LOOKUPS = Counter("jobyard_api_key_lookups", "API-key lookups that reached Postgres.", ["result"])
AUTH_REFUSALS = Counter("jobyard_auth_refusals", "Requests refused at authentication.", ["reason"])
