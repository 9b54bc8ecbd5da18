"""Group commit for enqueues: concurrent requests in one process share one transaction and one publish.

Every accepted job must be committed before its request is answered, and a commit costs a round
trip and a WAL flush. Requests that arrive while every flush slot is busy wait and then go together
in the next flush: an idle API commits each request at once, a busy one commits many per flush,
with no timer. The requests wait on the event loop; only the flush runs in a thread, so a
request costs no thread hand-off of its own.

A failed joint flush is split request by request only when Postgres refused one request's values
(nothing was committed, and running each alone shows whose they were). Any other failure, above all
a connection lost during or after the commit, may have committed the whole group: every request gets
that error (the API answers 503), and none is inserted a second time under new ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import sqlalchemy.exc
from dramatiq.brokers.redis import RedisBroker

from core.engine.fastenqueue import AsyncEnqueuer
from core.engine.jobs import Enqueued, NewJob, enqueue
from core.errors import IdempotencyConflict
from core.platform.settings import Settings

#: Jobs in one flush at most: the size of the largest batch request, so no statement is larger.
MAX_GROUP_JOBS = 1000
#: Flushes under way at once per API process: two overlap Python with Postgres; more (4, 16 measured)
#: only split the same requests into smaller groups that wait on more commits.
MAX_FLUSHES_IN_FLIGHT = 2


@dataclass(eq=False, slots=True)
class _Request:
    jobs: Sequence[NewJob]
    future: asyncio.Future[list[Enqueued]]


def refused_values(exc: BaseException) -> bool:
    """Whether a flush failed on a request's values, before anything was committed.

    An idempotency conflict (raised inside the transaction, which then rolls back), or an error
    Postgres reported for the statement's data: a value it cannot store (class 22, a NUL character)
    or a constraint it violates (class 23). Anything else (a lost connection, a timeout, a bug)
    leaves the outcome of the whole flush unknown.
    """
    if isinstance(exc, IdempotencyConflict):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):  # the threaded path: the driver's error inside
        if exc.connection_invalidated:
            return False
        return isinstance(exc.orig, psycopg.DataError | psycopg.IntegrityError)
    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


def commit_together(
    groups: Sequence[Sequence[NewJob]], broker: RedisBroker, settings: Settings
) -> list[list[Enqueued] | Exception]:
    """``core.engine.jobs.enqueue`` for several requests in one transaction; each gets its own outcome.

    If the joint transaction fails on one request's values (an idempotency conflict, a value
    Postgres refuses), each request is run alone, so the error reaches only the request that caused
    it. If it fails otherwise (the connection lost during or after COMMIT), the jobs may be
    committed: only requests whose every job has an idempotency key are run again (the key finds
    the committed job); the others get the error.
    """
    if len(groups) > 1:
        try:
            results = enqueue([j for g in groups for j in g], broker, settings)
        except Exception as exc:
            if not refused_values(exc):
                return [_alone(g, broker, settings) if _keyed(g) else exc for g in groups]
        else:
            return _split(results, groups)
    return [_alone(g, broker, settings) for g in groups]


def _keyed(jobs: Sequence[NewJob]) -> bool:
    return all(j.idempotency_key for j in jobs)


def _alone(jobs: Sequence[NewJob], broker: RedisBroker, settings: Settings) -> list[Enqueued] | Exception:
    try:
        return enqueue(jobs, broker, settings)
    except Exception as exc:
        return exc


class GroupCommit:
    """Joins the enqueues of one event loop's requests (one per API process).

    Up to ``max_in_flight`` flushes run at once, so Python work on one overlaps Postgres's work on
    another; requests that arrive while all are busy wait and share the next one.
    """

    def __init__(
        self,
        settings: Settings,
        broker: RedisBroker,
        fast: AsyncEnqueuer | None = None,
        max_jobs: int = MAX_GROUP_JOBS,
        max_in_flight: int = MAX_FLUSHES_IN_FLIGHT,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.fast = fast
        self.max_jobs = max_jobs
        self.max_in_flight = max_in_flight
        self._waiting: list[_Request] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def enqueue(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        request = _Request(new_jobs, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self._start_flushes()
        return await request.future

    def _start_flushes(self) -> None:
        while self._waiting and len(self._in_flight) < self.max_in_flight:
            group: list[_Request] = []
            size = 0
            while self._waiting and (not group or size + len(self._waiting[0].jobs) <= self.max_jobs):
                size += len(self._waiting[0].jobs)
                group.append(self._waiting.pop(0))
            task = asyncio.create_task(self._flush(group))
            self._in_flight.add(task)
            task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._start_flushes()

    async def _flush(self, group: list[_Request]) -> None:
        try:
            outcomes = await self._commit(group)
        except BaseException as exc:  # cancelled, or a bug: no request may wait forever
            for r in group:
                if not r.future.done():
                    r.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            raise
        for r, outcome in zip(group, outcomes, strict=True):
            if r.future.done():  # the client went away; its jobs are committed all the same
                continue
            if isinstance(outcome, Exception):
                r.future.set_exception(outcome)
            else:
                r.future.set_result(outcome)

    async def _commit(self, group: list[_Request]) -> list[list[Enqueued] | Exception]:
        jobs = [j for r in group for j in r.jobs]
        if self.fast is None or not self.fast.takes(jobs):
            return await asyncio.to_thread(
                commit_together, [r.jobs for r in group], self.broker, self.settings
            )
        try:
            results = await self.fast.enqueue(jobs)
        except Exception as exc:
            if len(group) == 1 or not refused_values(exc):
                # The insert is one autocommitted statement: a connection lost while it ran may
                # have committed it. Running the requests again would insert them twice.
                return [exc for _ in group]
            # One request's value Postgres refuses (a NUL character) must fail only that request.
            outcomes: list[list[Enqueued] | Exception] = []
            for r in group:
                try:
                    outcomes.append(await self.fast.enqueue(r.jobs))
                except Exception as alone:
                    outcomes.append(alone)
            return outcomes
        return _split(results, [r.jobs for r in group])


def _split(results: list[Enqueued], groups: Sequence[Sequence[NewJob]]) -> list[list[Enqueued] | Exception]:
    """The joint results handed back to each request, in order."""
    out: list[list[Enqueued] | Exception] = []
    start = 0
    for g in groups:
        out.append(results[start : start + len(g)])
        start += len(g)
    return out
