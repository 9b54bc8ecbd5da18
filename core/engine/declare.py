"""``@job_type``: one declaration per kind of job, and what its handlers get.

A job type is declared once, in the module that holds its payload and its logic::

    @job_type("greet", payload=Greet, queue="default", max_retries=2, timeout_s=30)
    def greet(ctx: JobContext, payload: Greet) -> dict:
        return {"hello": payload.name}

Importing the module registers the type: the API validates payloads against it, the scheduler fires
its schedules, and a worker declares an actor for it (workers/actors.py) and runs its handler
(workers/execution.py). The built-in types are declared the same way in their feature packages; a
deployment names its own modules in JOBYARD_JOB_MODULES (core/catalog.py imports them all).
Declaring touches no broker, database or network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

import msgspec
from sqlalchemy.engine import Connection

from core.engine.job_types import JobType, Resource, Retention, register_job_type
from core.engine.lifecycle import Claim
from core.engine.progress import ProgressReporter, checked
from core.errors import JobCancelled
from core.platform.cancellation import CancelScope
from core.platform.settings import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets besides its payload: the claim and the transaction its effects go in.

    A long handler also reads ``cancelled`` between its steps (or calls ``stop_if_cancelled()``),
    and reports ``progress``. See docs/guide/job-types/index.md, "Cancel and progress".
    """

    claim: Claim
    settings: Settings
    #: The job's transaction; None for a type declared with transactional=False.
    job_conn: Connection | None
    #: The run's cancel scope (set by the worker); None in a handler called directly, as in tests.
    cancel_scope: CancelScope | None = None
    #: Where ``progress`` goes (set by the worker); None: reports are checked and dropped.
    reporter: ProgressReporter | None = None

    @property
    def cancelled(self) -> bool:
        """True once the worker noticed a cancel of this job (asked while it runs): stop at the next
        step, by raising (``stop_if_cancelled``). Its LLM, HTTP and browser calls are aborted too."""
        return self.cancel_scope is not None and self.cancel_scope.cancelled

    def stop_if_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled: the job then ends ``cancelled`` (a
        transactional handler's effects roll back; effects already committed stay)."""
        if self.cancelled:
            raise JobCancelled("the job was cancelled while it ran")

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is: ``fraction`` from 0 to 1, and a short message (at most 500
        characters). Cheap to call often: written at most once a second, the last report kept.
        PermanentError ``invalid_progress`` (the job fails) for a fraction out of 0..1 or NaN."""
        if self.reporter is None:
            checked(fraction, message)
            return
        self.reporter.report(fraction, message)

    @property
    def conn(self) -> Connection:
        """The job's transaction, which commits with its success."""
        if self.job_conn is None:
            raise RuntimeError(
                "this handler runs outside the job's transaction (transactional=False): "
                "open short transactions of its own with core.platform.db.transaction"
            )
        return self.job_conn

    @property
    def tenant(self) -> str:
        """Whose job it is: the rows its handler reads and writes are that tenant's."""
        return self.claim.tenant


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a batch handler gets: the claims (in queue order) and the transaction of their effects.
    Each job is its own claim's tenant's (a batch may hold several tenants' jobs)."""

    claims: Sequence[Claim]
    settings: Settings
    conn: Connection

    @property
    def cancelled(self) -> bool:
        """Always False: a batch runs in one short transaction and is not stopped midway; a cancel
        asked of one of its jobs while it runs comes too late (the job finishes)."""
        return False


#: Runs one job and returns its result (stored as JSON on the job).
Handler = Callable[[JobContext, Any], Any]
#: Takes the payloads in queue order and returns one result per payload, in the same order, as
#: if the jobs had run one after the other.
BatchHandler = Callable[[BatchContext, list[Any]], list[Any]]
H = TypeVar("H", bound=Handler)


class JobTypeOptions(TypedDict, total=False):
    """The options of ``@job_type`` beyond its name and payload; each defaults to JobType's."""

    queue: str
    max_retries: int
    min_backoff_s: float
    max_backoff_s: float
    timeout_s: float
    max_rate_limit_waits: int
    description: str
    max_payload_bytes: int
    sealed_fields: tuple[str, ...]


def job_type(
    name: str,
    *,
    payload: type[msgspec.Struct],
    transactional: bool = True,
    batch: BatchHandler | None = None,
    resources: Sequence[Resource] = (),
    retain: Mapping[str, float] | None = None,
    **options: Unpack[JobTypeOptions],
) -> Callable[[H], H]:
    """Declare the job type ``name`` with the decorated function as its handler.

    ``payload`` is the msgspec Struct a job's payload must match (checked field by field at enqueue).
    ``options`` are the type's queue (default: a queue named after the type), retry policy, time
    limit, payload size limit and sealed fields (see JobType).

    By default the handler runs inside the transaction that marks the job succeeded (``ctx.conn``),
    so its Postgres effects commit together with the success, or not at all.

    ``transactional=False`` is for a handler with an effect outside Postgres (sending a message): it
    must not hold a transaction open across a slow outside call, and it has to record what it is
    about to do in a commit of its own *before* the call, so a crash mid-call is visible to the next
    attempt. Such a handler gets no ``ctx.conn``, opens its own short transactions, and the job's
    success is then marked in a final short transaction, fenced by the attempt number as usual.

    ``batch`` runs many queued jobs of the type in one transaction (see workers/execution.py); if a
    batch fails, its jobs are run one by one through the handler, so one bad job fails only itself.

    ``resources`` are started at boot in the worker processes that consume the type's queue, and
    stopped at their shutdown (see Resource).

    ``retain`` keeps the type's finished jobs for other times than JOBYARD_RETAIN_SUCCEEDED,
    _CANCELLED and _DEAD say, in seconds after they finished, per final status (0: forever), e.g.
    ``retain={"succeeded": 3600}``; checked here, so a wrong one fails at import, not at pruning.

    The function is returned as it is: it stays an ordinary function, callable in tests.
    """

    retention = Retention.declared(name, retain)

    def declare(fn: H) -> H:
        register_job_type(
            JobType(
                name=name,
                payload=payload,
                handler=fn,
                transactional=transactional,
                batch=batch,
                resources=tuple(resources),
                retain=retention,
                **options,
            )
        )
        return fn

    return declare
