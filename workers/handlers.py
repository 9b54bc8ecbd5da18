"""Which function runs each job type, and the Dramatiq actors built for them at worker start.

Handlers are plain functions registered by name; actors are declared on the broker only when a
worker process boots, so importing a handler module never creates or touches a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgspec
from sqlalchemy.engine import Connection

from core.engine.job_types import get_job_type, job_types
from core.engine.lifecycle import Claim, mark_succeeded, open_claim
from core.platform.db import transaction
from core.platform.settings import Settings
from workers import middleware


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its payload: the claim and the transaction its effects go in."""

    claim: Claim
    settings: Settings
    #: The job's transaction; None for a handler registered with transactional=False.
    job_conn: Connection | None

    @property
    def conn(self) -> Connection:
        """The job's transaction, which commits with its success."""
        if self.job_conn is None:
            raise RuntimeError(
                "this handler runs outside the job's transaction (transactional=False): "
                "open short transactions of its own with core.platform.db.transaction"
            )
        return self.job_conn


Handler = Callable[[JobContext, Any], Any]
_handlers: dict[str, Handler] = {}
#: Types whose handler runs outside the job's transaction (see ``handler``).
_outside_transaction: set[str] = set()


def handler(type_name: str, *, transactional: bool = True) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``type_name``.

    By default it runs inside the transaction that marks the job succeeded, so its Postgres effects
    commit together with the success, or not at all.

    ``transactional=False`` is for a handler with an effect outside Postgres (sending a message): it
    must not hold a transaction open across a slow outside call, and it has to record what it is
    about to do in a commit of its own *before* the call, so a crash mid-call is visible to the next
    attempt. Such a handler gets no ``ctx.conn``, opens its own short transactions, and the job's
    success is then marked in a final short transaction, fenced by the attempt number as usual.
    """

    def register(fn: Handler) -> Handler:
        _handlers[type_name] = fn
        if transactional:
            _outside_transaction.discard(type_name)
        else:
            _outside_transaction.add(type_name)
        return fn

    return register


def consumes(worker: dramatiq.Worker, queue: str) -> bool:
    """Whether this worker process takes messages from ``queue`` (no --queues: every queue)."""
    whitelist = worker.consumer_whitelist
    return not whitelist or queue in whitelist


def registered_handlers() -> dict[str, Handler]:
    return dict(_handlers)


def run(type_name: str, settings: Settings) -> Any:
    """Run the claimed job of this worker thread through its handler and commit its success."""
    return run_claimed(middleware.current_claim(), settings)


def run_claimed(claim: Claim, settings: Settings) -> Any:
    """Run a claimed job through its handler and commit its success (raises on failure)."""
    type_name = claim.type
    job_type = get_job_type(type_name)
    # Opened here, after the claim committed: a value that does not open fails this job alone.
    payload = msgspec.convert(open_claim(claim), job_type.payload)
    fn = _handlers[type_name]
    if type_name in _outside_transaction:
        result = fn(JobContext(claim=claim, settings=settings, job_conn=None), payload)
        with transaction(settings) as conn:
            mark_succeeded(conn, claim, result)
        return None
    with transaction(settings) as conn:
        result = fn(JobContext(claim=claim, settings=settings, job_conn=conn), payload)
        mark_succeeded(conn, claim, result)
    return None


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> list[str]:
    """Declare one actor per job type that has a handler (and one for its batches, if it has a batch
    handler); returns the queue names."""
    from workers.batching import declare_batch_actor

    queues = []
    for name, job_type in sorted(job_types().items()):
        if name not in _handlers:
            continue

        def fn(job_id: str, _name: str = name) -> Any:
            return run(_name, settings)

        # TimeLimit interrupts Python code at the type's limit; recovery covers code it cannot stop.
        options = {"time_limit": int(job_type.timeout_s * 1000)}
        dramatiq.Actor(
            fn, broker=broker, actor_name=name, queue_name=job_type.queue_name, priority=0, options=options
        )
        declare_batch_actor(broker, settings, job_type, options)
        queues.append(job_type.queue_name)
    return queues
