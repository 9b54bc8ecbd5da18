"""structlog and redis-py imported without the packages they load only because those are installed,
and without the modules they import for features the farm does not use.

Imported first by the farm's entry points (workers/entrypoint.py, workers/scheduler.py,
control_api/__main__.py), before anything imports structlog, redis-py or SQLAlchemy. Each library
tries an optional package at import and, when it is there, keeps it for a feature the farm does not
use:

- structlog loads rich (with pygments and attrs), and colorama, for its console renderer's pretty
  tracebacks and Windows colours. The farm's chain renders every traceback as text before the
  renderer (``format_exc_info``, core/platform/logs.py), so the renderer never formats one, and
  its colours are the same ANSI codes with or without colorama. Litestar depends on rich, so it is
  always installed: some 4 MiB of resident memory in every process. It also loads greenlet, for
  its deprecated thread-local module (``structlog.threadlocal``), which the farm does not use: 1 MiB
  with the C++ runtime it maps.
- redis-py loads OpenTelemetry's metrics API and SDK (and psutil) for metrics of its own, which the
  farm never turns on (its tracing instruments the Redis client from outside,
  core/platform/tracing.py): some 2.5 MiB.

Only that import is affected: the packages are hidden while structlog and redis-py are imported,
and anything imported later finds them as usual.

Some modules are deferred instead (core/platform/modules.py): imported as usual, run at their first
use. ``import redis`` imports its asyncio client (``redis.asyncio``, with its cluster and sentinel
clients), which only the API uses; SQLAlchemy's PostgreSQL package imports the dialects of asyncpg,
pg8000, psycopg2 and psycopg2cffi, and the farm connects with psycopg. Together about 1.5 MiB of
every worker process. The API uses ``redis.asyncio`` from its start, and loads it then. Measured in
docs/performance.md#memory.
"""

from __future__ import annotations

from core.platform.modules import deferred, hidden

#: Optional packages of structlog and redis-py the farm does not use (see above).
UNUSED_OPTIONAL = ("rich", "colorama", "greenlet", "opentelemetry.metrics", "opentelemetry.sdk.metrics")

#: Modules the libraries import at the top and the farm's workers do not use (see above).
DEFERRED = (
    "redis.asyncio",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.postgresql.pg8000",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "sqlalchemy.dialects.postgresql.psycopg2cffi",
)

deferred(*DEFERRED)

with hidden(*UNUSED_OPTIONAL):
    import redis  # noqa: F401
    import structlog  # noqa: F401
