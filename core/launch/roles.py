"""How the farm's long-running roles are started: the worker's command line, the queues it consumes,
the services' URLs its children inherit, and waiting for the API to answer.

Shared by the `jobyard` command (one role per process) and `jobyard up` (every role, supervised).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from typing import Any

from core.platform.settings import Settings


def service_env(settings: Settings) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL as the settings have them (e.g. the embedded services'), for a child."""
    env = {}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def worker_argv(
    processes: int, threads: int, queues: tuple[str, ...], shutdown_timeout_s: float
) -> list[str]:
    # Dramatiq's CLI, without the file watcher it would import (workers/master.py).
    argv = [sys.executable, "-m", "workers.master", "workers.entrypoint", "--processes", str(processes)]
    argv += ["--threads", str(threads), "--skip-logging"]
    # Dramatiq takes milliseconds; past this, running jobs are handed back (see core/engine/recovery.py).
    argv += ["--worker-shutdown-timeout", str(int(shutdown_timeout_s * 1000))]
    if queues:
        argv += ["--queues", *queues]
    return argv


def known_queues(settings: Settings) -> tuple[str, ...]:
    """The queues of every registered job type (built-in and JOBYARD_JOB_MODULES)."""
    from core.catalog import load_job_types

    return tuple(sorted({t.queue_name for t in load_job_types(settings).values()}))


def queues_except(
    settings: Settings, excluded: tuple[str, ...], among: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """``among`` (default: every registered job type's queue) less ``excluded``.

    Dramatiq takes only a list of queues to consume; this is how a worker consumes "all but these".
    """
    return tuple(q for q in among or known_queues(settings) if q not in excluded)


def wait_for_http(url: str, timeout_s: float, alive: Any = None) -> bool:
    """Poll ``url`` until it answers 200, the timeout passes, or ``alive()`` turns false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own local URL
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
