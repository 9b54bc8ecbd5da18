"""What the `dramatiq` CLI loads in each worker process (`jobyard worker` starts it).

The Dramatiq CLI imports a module and takes the broker it defines, so this module builds the
broker when imported. Nothing else imports it: importing it is starting a worker process.
"""

from __future__ import annotations

# First, before any module imports structlog or redis-py: they load without optional packages the
# farm does not use (core/platform/lean_imports.py).
import core.platform.lean_imports  # noqa: F401

# isort: split

import signal
import time
from types import FrameType

import dramatiq
from dramatiq.middleware import Middleware, ShutdownNotifications, TimeLimit

from core.engine.broker import build_broker
from core.platform.crypto import use_data_key
from core.platform.db import use_session_timeouts
from core.platform.heap import settle as settle_heap
from core.platform.logs import configure_logging
from core.platform.sentry import configure_sentry
from core.platform.settings import get_settings
from core.platform.tracing import configure_tracing
from workers.cancellation import CancelListener
from workers.middleware import JobLifecycle

#: A stop signal repeated within this window is the same stop arriving twice (see below). Dramatiq's
#: master forwards a signal when its main thread next wakes, which it does at least once a second
#: (``proc.join(timeout=1)``): a signal the kernel hands to another of its threads is forwarded up to
#: a second late, later on a loaded machine. One second was measured too short (a forward 1.01 s
#: after the group's SIGTERM killed a booting worker process, exit code 1).
REPEATED_SIGNAL_WINDOW_S = 5.0


def ignore_repeated_sigterm() -> None:
    """Let a SIGTERM sent to the whole process group stop this worker process gracefully.

    honcho, foreman and systemd (KillMode=control-group) signal every process of the group, so each
    worker process gets the SIGTERM twice: directly and forwarded by Dramatiq's master. Dramatiq
    takes a second SIGTERM as "exit now", which would skip finishing the running jobs and handing
    back the rest. A repeat inside the window is dropped; a later one still forces the exit (a
    worker asked twice, seconds apart, to stop at once).
    """
    dramatiq_handler = signal.getsignal(signal.SIGTERM)
    if not callable(dramatiq_handler):
        return
    first: list[float] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if first and now - first[0] < REPEATED_SIGNAL_WINDOW_S:
            return
        first[:] = [now]
        dramatiq_handler(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def boot() -> dramatiq.Broker:
    from core.catalog import load_job_types
    from workers.actors import declare_actors
    from workers.resources import Resources

    ignore_repeated_sigterm()
    settings = get_settings()
    # Tracing first: its instrumentation wraps the clients made below, and log lines carry its ids.
    tracing = configure_tracing("worker")
    configure_logging(settings, process="worker")
    configure_sentry(settings, process="worker")
    # Refuse to boot without the data key: a message's recipient could not be read.
    use_data_key(settings)
    # Handlers may run heavy SQL of their own: a longer statement timeout than the API's (core/platform/db.py).
    use_session_timeouts(settings.worker_statement_timeout_s, 0.0)
    load_job_types(settings)
    # Retries are decided by JobLifecycle and wait in Postgres, so Dramatiq's Retries is left out.
    # Resources starts the job types' resources at boot (the embedding model, Chromium), each only in
    # processes that consume the queue of a type that needs it.
    middleware: list[Middleware] = [TimeLimit(), ShutdownNotifications()]
    if tracing:
        from workers.tracing import JobTracing

        # Before JobLifecycle: the claim and the outcome's commit are inside the job's span.
        middleware.append(JobTracing())
    # CancelListener before JobLifecycle: a job's cancel scope exists before its claim commits.
    middleware += [CancelListener(settings), JobLifecycle(settings), Resources(settings)]
    broker = build_broker(settings, middleware=middleware, consumer=True)
    declare_actors(broker, settings)
    dramatiq.set_broker(broker)
    settle_heap()  # start-up's objects out of every later collection (core/platform/heap.py)
    return broker


broker = boot()
