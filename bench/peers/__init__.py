"""The peers Jobyard is measured against: bare Dramatiq and Celery, each with a no-op task."""

#: Where a peer's task puts its start delay (seconds) when it was sent with its send time.
LATENCY_KEY = "peer:latency"
#: The queue both peers use (in Redis databases of their own).
QUEUE = "noop"
