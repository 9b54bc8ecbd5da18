"""Where a stuck API process is waiting, on request: two signals, nothing else changes.

- ``kill -USR1 <pid>``: every thread's Python stack, written to stderr by :mod:`faulthandler` from
  the signal handler itself, so it answers even when the event loop is blocked.
- ``kill -USR2 <pid>``: every asyncio task's stack (what each request and each group-commit flush is
  awaiting), as one ``asyncio_tasks`` log line, from the event loop (it needs a loop that runs).

The test farm sends both to an API whose test failed (tests/integration/conftest.py), so a request
that hung in CI says where from the report alone.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import signal
import sys
import threading

import structlog

log = structlog.get_logger(__name__)

THREADS_SIGNAL = signal.SIGUSR1
TASKS_SIGNAL = signal.SIGUSR2


def install() -> None:
    """Register both signals for this process; call from the running event loop of its main thread.

    Elsewhere (an app run in a test client's thread) it does nothing: a signal handler can only be
    set from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    faulthandler.register(THREADS_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    asyncio.get_running_loop().add_signal_handler(TASKS_SIGNAL, _log_tasks)


def _log_tasks() -> None:
    tasks = asyncio.all_tasks()
    out = io.StringIO()
    for task in tasks:
        task.print_stack(file=out)
    log.warning("asyncio_tasks", tasks=len(tasks), stacks=out.getvalue())
