"""structlog and redis-py imported without the packages they load only because those are installed.

Imported first by the farm's entry points (workers/entrypoint.py, workers/scheduler.py,
control_api/__main__.py), before anything imports structlog or redis-py. Each library tries an
optional package at import and, when it is there, keeps it for a feature the farm does not use:

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
and anything imported later finds them as usual. Measured in docs/performance.md#memory.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Optional packages of structlog and redis-py the farm does not use (see above).
UNUSED_OPTIONAL = ("rich", "colorama", "greenlet", "opentelemetry.metrics", "opentelemetry.sdk.metrics")


@contextmanager
def hidden(*names: str) -> Iterator[None]:
    """Inside the block, ``import name`` raises ImportError, as if the package were not installed.
    A name already imported is left alone. Afterwards the names import normally again."""
    hide = [name for name in names if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # import's own "not importable" marker
    try:
        yield
    finally:
        for name in hide:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


with hidden(*UNUSED_OPTIONAL):
    import redis  # noqa: F401
    import structlog  # noqa: F401
