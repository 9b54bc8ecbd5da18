"""The Dramatiq actors of a worker process, declared from the job type registry when it boots.

Declaring a job type (``@job_type``) never creates or touches a broker: its actor is declared here,
on the worker's broker, once the job modules are loaded.
"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq

from core.engine.consumer import batch_actor_name
from core.engine.job_types import JobType, job_types
from core.platform.settings import Settings
from workers.execution import run_batch, run_current


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> list[str]:
    """Declare one actor per job type that has a handler, and one for its batches if it has a batch
    handler (and batches are on); returns the queue names."""
    queues = []
    for name, job_type in sorted(job_types().items()):
        if job_type.handler is None:
            continue

        def run(job_id: str) -> None:
            run_current(settings)

        # TimeLimit interrupts Python code at the type's limit; recovery covers code it cannot stop.
        options = {"time_limit": int(job_type.timeout_s * 1000)}
        dramatiq.Actor(
            run, broker=broker, actor_name=name, queue_name=job_type.queue_name, priority=0, options=options
        )
        if job_type.batch is not None and settings.worker_batch_max > 1:
            _declare_batch_actor(broker, settings, job_type, options)
        queues.append(job_type.queue_name)
    return queues


def _declare_batch_actor(
    broker: dramatiq.Broker, settings: Settings, job_type: JobType, options: dict[str, Any]
) -> None:
    def run(job_ids: list[str]) -> None:
        run_batch(job_type, [uuid.UUID(j) for j in job_ids], settings)

    dramatiq.Actor(
        run,
        broker=broker,
        actor_name=batch_actor_name(job_type.name),
        queue_name=job_type.queue_name,
        priority=0,
        options=options,
    )
