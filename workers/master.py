"""The worker's supervising process: Dramatiq's CLI (`python -m dramatiq`), without its file watcher
and without the docstrings of the libraries a worker runs.

`jobyard worker` runs this module (core/launch/roles.py); it forks the worker processes, which
import workers.entrypoint: they inherit what this process imported, and how it imports.

- Dramatiq's CLI imports its file watcher, and with it watchdog, whenever watchdog is installed
  (another package may bring it), for ``--watch``, which the farm never passes: under 1 MiB in
  every worker process.
- The functions of the standard library, of the libraries every worker imports and of the farm's
  own modules are loaded without their docstrings (core/platform/modules.py): about 2 MiB of every
  worker process. Other packages (a heavy worker's clients, torch, a JOBYARD_JOB_MODULES module)
  load as they are.
"""

from __future__ import annotations

import sys

from core.platform.modules import hidden, without_docstrings

#: The packages whose functions a worker loads without docstrings (with the standard library's): the
#: ones a worker of the light queues imports, and the farm's own.
WITHOUT_DOCSTRINGS = (
    "dramatiq",
    "redis",
    "sqlalchemy",
    "psycopg",
    "psycopg_binary",
    "psycopg_pool",
    "structlog",
    "msgspec",
    "opentelemetry",
    "pgvector",
    "typing_extensions",
    "core",
    "workers",
)

without_docstrings(*WITHOUT_DOCSTRINGS)

with hidden("watchdog"):
    from dramatiq.cli import main

if __name__ == "__main__":
    sys.exit(main())  # type: ignore[no-untyped-call]
