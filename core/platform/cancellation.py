"""A running job's cancel scope: whether its cancel was noticed, and how to abort its outbound calls.

The worker thread that runs a job enters the job's scope (``running``); the worker's cancel listener
(workers/cancellation.py) calls ``cancel()`` on it from another thread when a cancel of that job is
asked. From then on ``cancelled`` is True (a handler reads it as ``ctx.cancelled``), and every abort
registered by a call in flight runs: the providers register one for as long as they wait on the
network (core/providers/abortable.py shuts the call's socket down, core/providers/browser.py cancels
the page), so a blocked read returns at once instead of after the provider's timeout.

Why a thread-local: the providers are called deep inside handlers that know nothing of the worker;
the scope travels with the thread that runs the job, as the job's log fields do. A thread that runs
no job has no scope, and every call here is then a no-op.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from core.errors import JobCancelled

log = structlog.get_logger(__name__)

_local = threading.local()
_ids = itertools.count()


class CancelScope:
    """One job's cancel: set once, from any thread; the aborts registered meanwhile run at that moment."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._aborts: dict[int, Callable[[], object]] = {}

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Mark the job cancelled and abort its calls in flight (idempotent; safe from any thread)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            aborts = list(self._aborts.values())
        for abort in aborts:
            _run(abort)

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking at once on a cancel; True if cancelled."""
        return self._event.wait(timeout)

    @contextmanager
    def aborting(self, abort: Callable[[], object]) -> Iterator[None]:
        """Run ``abort`` if the cancel comes while the block runs (at once if it already came)."""
        key = next(_ids)
        with self._lock:
            already = self._event.is_set()
            if not already:
                self._aborts[key] = abort
        if already:
            _run(abort)
        try:
            yield
        finally:
            with self._lock:
                self._aborts.pop(key, None)


def _run(abort: Callable[[], object]) -> None:
    try:
        abort()
    except Exception as exc:  # an abort that fails must not keep the others from running
        log.warning("cancel_abort_failed", error=str(exc) or type(exc).__name__)


def current() -> CancelScope | None:
    """The scope of the job this thread runs; None outside a job."""
    scope: CancelScope | None = getattr(_local, "scope", None)
    return scope


@contextmanager
def running(scope: CancelScope | None) -> Iterator[CancelScope | None]:
    """Make ``scope`` this thread's for the block (None: no job)."""
    previous = current()
    _local.scope = scope
    try:
        yield scope
    finally:
        _local.scope = previous


def enter(scope: CancelScope | None) -> None:
    """Make ``scope`` this thread's until ``enter(None)`` (for hooks that cannot hold a ``with``)."""
    _local.scope = scope


def is_cancelled() -> bool:
    scope = current()
    return scope is not None and scope.cancelled


def stop_if_cancelled() -> None:
    """Raise JobCancelled if this thread's job was cancelled."""
    if is_cancelled():
        raise JobCancelled("the job was cancelled while it ran")


@contextmanager
def aborting(abort: Callable[[], object]) -> Iterator[None]:
    """``CancelScope.aborting`` on this thread's scope; a no-op outside a job."""
    scope = current()
    if scope is None:
        yield
        return
    with scope.aborting(abort):
        yield
