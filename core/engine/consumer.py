"""The Redis consumer of Jobyard's workers: fair between tenants, woken at once by a publish, and able
to hand out batches.

It fetches from the queue's lanes (core/engine/lanes.py) with one script that serves the tenants
round robin, the most urgent lane of each first. It counts the messages it holds per tenant and
holds at most ``cap`` of one tenant (its prefetch is larger): a tenant with a backlog of thousands
fills its share of the worker, never all of it, so another tenant's job published now is fetched
now and starts on the first thread free, instead of waiting behind everything this worker fetched.

Dramatiq's own Redis consumer sleeps with a growing backoff while its queue is empty, so a job
published to an idle worker waits for the end of that sleep. Here every publish also pushes a token
on the queue's wake list (same pipeline) and an idle consumer blocks on that list with ``BLPOP``, so
it fetches as soon as something arrives. A consumer that has nothing to fetch only because its
tenants are at their cap blocks on its own wake list too, which an ack pushes to: it fetches again
as soon as one of its messages is done. The hash and the per-consumer ack set are Dramatiq's, so
recovery and the sweeper see messages where they always were.

A worker that ops quieted (workers/quiet.py) sets its broker's ``quiet`` flag: its consumers then
fetch nothing more, give back the messages they fetched and did not hand out, and keep beating.

For job types with a batch handler, the consumer hands the worker one message standing for up to
``batch_max`` queued jobs, acknowledged together in one round trip once their results are committed.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq
import msgspec
import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import MAINTENANCE_SCALE, _RedisConsumer
from dramatiq.errors import ConnectionClosed

from core.engine.lanes import tenant_of
from core.platform.tenants import DEFAULT_TENANT

#: Tokens kept on a wake list: enough to wake every consumer of a queue, bounded so a burst of
#: publishes with no consumer listening leaves no pile behind.
WAKE_TOKENS = 64
#: Option of a batch message: the (job id, redis message id) pairs it stands for.
BATCH_OPTION = "jobyard_batch"
BATCH_SUFFIX = "__batch"
#: Option of a message published again after the worker holding its job died (Publication.redelivered).
REDELIVERED_OPTION = "jobyard_redelivered"
#: Option a worker sets on a fetched message it must not start (its queue was paused meanwhile): the
#: consumer then gives the message back to the front of its queue instead of acknowledging it.
HAND_BACK_OPTION = "jobyard_hand_back"
#: Most messages one fetch takes (the script unpacks no list of this size).
MAX_FETCH = 1000


def wake_key(namespace: str, queue: str) -> str:
    return f"{namespace}:{queue}.wake"


def batch_actor_name(type_name: str) -> str:
    return type_name + BATCH_SUFFIX


class _Envelope(msgspec.Struct):
    """The parts of a Dramatiq message a batch needs, decoded without building a Message."""

    actor_name: str
    args: list[Any]
    options: dict[str, Any]


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


class _Options(msgspec.Struct):
    options: dict[str, Any]


_decode_options = msgspec.json.Decoder(_Options).decode


class JobyardConsumer(_RedisConsumer):
    def __init__(
        self, broker: Any, queue_name: str, prefetch: int, timeout: int, batch_max: int, cap: int
    ) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.batch_max = batch_max
        self.cap = cap  # the most messages of one tenant this consumer holds
        self.held = 0  # fetched messages not yet acknowledged, counted one by one (batches too)
        self.freed = threading.Condition()  # its lock guards held, by_tenant, tenants and blocked
        # Messages fetched and not yet acknowledged (the cache's too): per tenant, and each one's tenant.
        self.by_tenant: Counter[str] = Counter()
        self.tenants: dict[str, str] = {}
        # Set while a fetch may find nothing only because of the cap: an ack then wakes the consumer.
        self.blocked = False
        ns = broker.namespace
        self.wake_key = wake_key(ns, queue_name)
        self.own_wake_key = f"{self.wake_key}.{broker.broker_id}"

    @property
    def outstanding_message_count(self) -> int:
        return self.held + len(self.message_cache)

    def _hold(self, count: int) -> None:
        with self.freed:
            self.held += count

    def _track(self, fetched: list[bytes]) -> None:
        """Count the fetched messages under their tenants."""
        with self.freed:
            for data in fetched:
                options = _decode_options(data).options
                tenant = tenant_of(options)
                self.tenants[options["redis_message_id"]] = tenant
                self.by_tenant[tenant] += 1

    def _untrack(self, redis_ids: list[str]) -> None:
        """Stop counting these messages under their tenants (the caller holds ``freed``)."""
        for redis_id in redis_ids:
            tenant = self.tenants.pop(redis_id, None)
            if tenant is not None:
                self.by_tenant[tenant] -= 1
                if self.by_tenant[tenant] <= 0:
                    del self.by_tenant[tenant]

    def _release(self, redis_ids: list[str]) -> None:
        with self.freed:
            self.held -= len(redis_ids)
            self._untrack(redis_ids)
            wake = self.blocked
            self.freed.notify()
        if wake:
            # The consumer may be blocked in Redis waiting for room under the cap: room it has now.
            pipe = self.broker.client.pipeline(transaction=False)
            pipe.rpush(self.own_wake_key, b"1")
            pipe.ltrim(self.own_wake_key, -1, -1)
            pipe.expire(self.own_wake_key, 60)
            pipe.execute()

    def ack(self, message: MessageProxy) -> None:
        if message.options.pop(HAND_BACK_OPTION, False):
            # Not run (its queue is paused): back to the front of the queue, not acknowledged.
            self._settle(message, self._give_back)
            return
        self._settle(message, self._ack)

    def nack(self, message: MessageProxy) -> None:
        self._settle(message, self._nack)

    def _settle(self, message: MessageProxy, settle: Callable[[list[tuple[str, str]]], None]) -> None:
        """Ack or nack a message (a batch: every job of it), then free its room."""
        pairs = message.options.get(BATCH_OPTION)
        ids = [message.options["redis_message_id"]] if pairs is None else [r for _, r in pairs]
        try:
            settle(self._with_tenants(ids))
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        finally:
            self.queued_message_ids.discard(message.message_id)
            self._release(ids)

    def _with_tenants(self, ids: list[str]) -> list[tuple[str, str]]:
        with self.freed:
            return [(i, self.tenants.get(i, DEFAULT_TENANT)) for i in ids]

    def _ack(self, pairs: list[tuple[str, str]]) -> None:
        # Dramatiq's ack, for one or many at once, which also frees the tenants' running room.
        self.broker.ack(self.queue_name, pairs)

    def _nack(self, pairs: list[tuple[str, str]]) -> None:
        for redis_id, _ in pairs:
            self.broker.do_nack(self.queue_name, redis_id)  # to Dramatiq's dead-letter set, as before
        self.broker.release(self.queue_name, pairs)

    def _give_back(self, pairs: list[tuple[str, str]]) -> None:
        # Dramatiq's requeue: from the ack set to the queue's list, which the next fetch takes first.
        self.broker.do_requeue(self.queue_name, *(redis_id for redis_id, _ in pairs))
        self.broker.release(self.queue_name, pairs)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        ids: list[str] = []
        given = list(messages)
        for message in given:
            pairs = message.options.get(BATCH_OPTION)
            ids.extend(r for _, r in pairs) if pairs else ids.append(message.options["redis_message_id"])
        if ids:
            # Back on Dramatiq's list, which the next fetch takes first (core/engine/lanes.py).
            self.broker.do_requeue(self.queue_name, *ids)
            self.broker.release(self.queue_name, self._with_tenants(ids))
            self._release(ids)
            for message in given:
                self.queued_message_ids.discard(message.message_id)

    def _fetch(self, room: int) -> list[bytes]:
        if random.randint(1, MAINTENANCE_SCALE) <= self.broker.maintenance_chance:  # noqa: S311 - a chance, not a secret
            self.broker.maintain(self.queue_name)  # as often as Dramatiq's fetch runs it
        with self.freed:
            held = dict(self.by_tenant)
            self.blocked = any(n >= self.cap for n in held.values())
        fetched: list[bytes] = self.broker.fetch(self.queue_name, min(room, MAX_FETCH), self.cap, held)
        self._track(fetched)
        return fetched

    def _stay_quiet(self) -> None:
        """Quiet (workers/quiet.py): give back the fetched messages not handed out yet, keep the
        consumer's heartbeat (its running messages stay its own), and wait for the next look."""
        if self.message_cache:
            ids = [_decode_options(data).options["redis_message_id"] for data in self.message_cache]
            self.message_cache = []
            self.broker.do_requeue(self.queue_name, *ids)
            self.broker.release(self.queue_name, self._with_tenants(ids))
            with self.freed:
                self._untrack(ids)
        self.broker.quiet_seen.add(self.queue_name)
        self.broker.beat()
        with self.freed:
            self.freed.wait(self.timeout / 1000)

    def __next__(self) -> MessageProxy | None:
        try:
            if getattr(self.broker, "quiet", None) is not None and self.broker.quiet.is_set():
                self._stay_quiet()
                return None
            if not self.message_cache:
                room = self.prefetch - self.outstanding_message_count
                if room <= 0:
                    # Every prefetched message is being worked on: wait for an ack, not a fixed sleep.
                    with self.freed:
                        freed = self.freed.wait(self.timeout / 1000)
                    if not freed:
                        # Long jobs: beat as a fetch would, or this consumer would look dead.
                        self.broker.beat()
                    return None
                try:
                    self.message_cache = self._fetch(room)
                    if not self.message_cache:
                        # Idle, or its tenants at their cap: sleep until a publisher pushes a wake
                        # token, an ack makes room (own_wake_key), or the idle timeout passes.
                        self.broker.client.blpop([self.wake_key, self.own_wake_key], self.timeout / 1000)
                        return None
                finally:
                    with self.freed:
                        self.blocked = False
            first = _decode_envelope(self.message_cache[0])
            if self._batchable(first) and batch_actor_name(first.actor_name) in self.broker.actors:
                return self._next_batch(first.actor_name)
            message = dramatiq.Message.decode(self.message_cache.pop(0))
            self._hold(1)
            self.queued_message_ids.add(message.message_id)
            return MessageProxy(message)
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _batchable(self, env: _Envelope) -> bool:
        """Whether a message may join a batch. Not one published again after a worker holding its
        job died: it runs alone, where a run that kills its worker counts as an attempt, so a job
        that does so every time ends dead instead of looping (a batch may commit nothing of a run
        that dies, core/engine/batch_lifecycle.py)."""
        return self.batch_max > 1 and not env.options.get(REDELIVERED_OPTION)

    def _next_batch(self, actor: str) -> MessageProxy:
        """One message standing for the next fetched jobs of ``actor`` (up to batch_max, no waiting)."""
        pairs: list[tuple[str, str]] = []
        while self.message_cache and len(pairs) < self.batch_max:
            env = _decode_envelope(self.message_cache[0])
            if env.actor_name != actor or not self._batchable(env):
                break
            self.message_cache.pop(0)
            pairs.append((env.args[0], env.options["redis_message_id"]))
        self._hold(len(pairs))
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=batch_actor_name(actor),
            args=([job_id for job_id, _ in pairs],),
            kwargs={},
            options={BATCH_OPTION: pairs},
            message_id=str(uuid.uuid4()),
        )
        self.queued_message_ids.add(message.message_id)
        return MessageProxy(message)
