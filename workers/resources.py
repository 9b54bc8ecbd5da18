"""Starts the resources of the job types a worker process runs (a model, a browser) at its boot.

A job type declares what its handler needs once per process (``@job_type(..., resources=...)``);
this middleware starts each, once, before the process takes a message, only if the process consumes
the queue of a type that declares it, and stops them at shutdown, after the running jobs finished.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware

from core.engine.job_types import Resource, job_types
from core.platform.settings import Settings


def consumes(worker: dramatiq.Worker, queue: str) -> bool:
    """Whether this worker process takes messages from ``queue`` (no --queues: every queue)."""
    whitelist = worker.consumer_whitelist
    return not whitelist or queue in whitelist


class Resources(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resources: list[Resource] = []

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for _, job_type in sorted(job_types().items()):
            if job_type.handler is None or not consumes(worker, job_type.queue_name):
                continue
            for resource in job_type.resources:
                if not any(resource is r for r in self.resources):
                    self.resources.append(resource)
        for resource in self.resources:
            resource.start(self.settings)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for resource in reversed(self.resources):
            resource.stop()
