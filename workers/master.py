"""The worker's supervising process: Dramatiq's CLI (`python -m dramatiq`), without its file watcher.

`jobyard worker` runs this module (core/launch/roles.py); it forks the worker processes, which
import workers.entrypoint. Dramatiq's CLI imports its file watcher, and with it watchdog, whenever
watchdog is installed (another package may bring it), for ``--watch``, which the farm never passes;
every worker process it forks would carry it too (under 1 MiB). Nothing else is imported here: what
this process holds, each worker process starts with.
"""

from __future__ import annotations

import sys

from core.platform.modules import hidden

with hidden("watchdog"):
    from dramatiq.cli import main

if __name__ == "__main__":
    sys.exit(main())  # type: ignore[no-untyped-call]
