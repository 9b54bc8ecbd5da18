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

from core.db import transaction
from core.jobs import get_job_type, job_types
from core.lifecycle import Claim, mark_succeeded
from core.settings import Settings
from workers import middleware


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its payload: the claim and the transaction its effects go in."""

    claim: Claim
    conn: Connection
    settings: Settings


Handler = Callable[[JobContext, Any], Any]
_handlers: dict[str, Handler] = {}


def handler(type_name: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``type_name``.

    It runs inside the transaction that marks the job succeeded, so its Postgres effects commit
    together with the success, or not at all.
    """

    def register(fn: Handler) -> Handler:
        _handlers[type_name] = fn
        return fn

    return register


def registered_handlers() -> dict[str, Handler]:
    return dict(_handlers)


def run(type_name: str, settings: Settings) -> Any:
    """Run the claimed job of this worker thread through its handler and commit its success."""
    claim = middleware.current_claim()
    job_type = get_job_type(type_name)
    payload = msgspec.convert(claim.payload, job_type.payload)
    with transaction(settings) as conn:
        result = _handlers[type_name](JobContext(claim=claim, conn=conn, settings=settings), payload)
        mark_succeeded(conn, claim, result)
    return None


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> list[str]:
    """Declare one actor per job type that has a handler; returns the queue names."""
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
        queues.append(job_type.queue_name)
    return queues
