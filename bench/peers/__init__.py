"""The peers Jobyard is measured against, each with a no-op task: bare Dramatiq and Celery
(bench/peers/run.py), and the queue peers procrastinate, PgQueuer, Oban and arq
(bench/peers/queues.py)."""

#: Where a peer's task puts its start delay (seconds) when it was sent with its send time.
LATENCY_KEY = "peer:latency"
#: The queue every peer uses (in Redis databases or Postgres databases of their own).
QUEUE = "noop"
