"""The Dramatiq Redis broker, built from settings at process start, and how jobs are published on it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgspec
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from core.engine import lanes
from core.engine.consumer import BATCH_SUFFIX, REDELIVERED_OPTION, WAKE_TOKENS, JobyardConsumer, wake_key
from core.engine.lanes import DEFAULT_PRIORITY, TENANT_OPTION
from core.errors import RedisNotConfigured
from core.platform.settings import Settings, get_settings
from core.platform.tenants import DEFAULT_TENANT
from core.platform.tracing import TRACEPARENT

#: Longest wait for a Redis reply, for every client but the consumers' (whose reads block on
#: purpose): a Redis that hangs fails the call in seconds instead of holding a thread or a request.
REDIS_SOCKET_TIMEOUT_S = 5.0
#: TCP keepalive on every connection, the consumers' too: a Redis host that vanished without closing
#: its sockets (a dead node, a dropped NAT entry) is noticed in about a minute (30 s + 3 x 10 s).
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 30, 10, 3


def _keepalive(url: str) -> dict[str, Any]:
    if url.startswith("unix://"):
        return {}  # a local socket has no peer to lose (and redis-py takes no keepalive options for it)
    options = {socket.TCP_KEEPIDLE: KEEPALIVE_IDLE_S, socket.TCP_KEEPINTVL: KEEPALIVE_INTERVAL_S}
    options[socket.TCP_KEEPCNT] = KEEPALIVE_PROBES
    return {"socket_keepalive": True, "socket_keepalive_options": options}


def redis_client(
    settings: Settings | None = None, *, socket_timeout: float | None = REDIS_SOCKET_TIMEOUT_S
) -> redis.Redis:
    """A Redis client for the configured URL.

    ``socket_timeout=None`` is for Dramatiq's consumers only, which block on Redis (build_broker);
    a client that blocks for a known time (BLPOP with a timeout) needs one longer than that.
    """
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RedisNotConfigured("REDIS_URL is not set (run `jobyard up` to get embedded services)")
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
        health_check_interval=30,
        **_keepalive(settings.redis_url),
    )


def async_redis_client(
    settings: Settings, *, socket_timeout: float, connections: int = 64
) -> redis.asyncio.Redis:
    """An asyncio Redis client for the API's own per-request calls (the rate limiter).

    At most ``connections`` at once; a request past that waits for one (up to ``socket_timeout``)
    instead of failing, as redis-py's default pool does beyond 100.
    """
    if not settings.redis_url:
        raise RedisNotConfigured("REDIS_URL is not set (run `jobyard up` to get embedded services)")
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        **_keepalive(settings.redis_url),
    )
    return redis.asyncio.Redis(connection_pool=pool)


class JobyardRedisBroker(RedisBroker):
    """RedisBroker whose consumers fetch from the lanes (core/engine/lanes.py) and wake at once when
    a job is published (see core/engine/consumer.py).

    An idle consumer blocks on its queue's wake list for at most ``idle_poll_ms`` before it looks
    at the queue again, which bounds the wait for a message pushed without a wake token.
    """

    def __init__(self, *, idle_poll_ms: int, batch_max: int = 1, max_running: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.idle_poll_ms = idle_poll_ms
        self.batch_max = batch_max
        #: The farm's running cap per tenant and queue (JOBYARD_TENANT_MAX_RUNNING_PER_QUEUE).
        self.max_running = max_running
        self.fetch_script = self.client.register_script(lanes.FETCH_SCRIPT)
        self.ack_script = self.client.register_script(lanes.ACK_SCRIPT)
        #: Set when ops quiet this worker process (workers/quiet.py): its consumers fetch nothing more,
        #: give back what they fetched, and add their queue to ``quiet_seen`` once they have.
        self.quiet = threading.Event()
        self.quiet_seen: set[str] = set()

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        # Only a queue whose actors have batch handlers is batched (never a delay queue, `<q>.DQ`,
        # whose messages wait for their eta one by one).
        batched = any(
            a.queue_name == queue_name and a.actor_name.endswith(BATCH_SUFFIX) for a in self.actors.values()
        )
        if batched:
            # One tenant may hold a full batch being worked on and the next one ready; one batch
            # more is kept for the others, so their jobs never wait for this tenant's to finish.
            cap = max(prefetch, self.batch_max * 2)
            prefetch = cap + self.batch_max
        else:
            # Dramatiq's prefetch is twice its threads: one tenant may fill the threads, and the
            # other half is kept for the others, whose jobs then start on the first thread free.
            cap = max(prefetch // 2, 1)
        batch_max = self.batch_max if batched else 1
        return JobyardConsumer(self, queue_name, prefetch, min(timeout, self.idle_poll_ms), batch_max, cap)

    def fetch(self, queue_name: str, room: int, cap: int | None = None, held: Any = None) -> list[bytes]:
        """Up to ``room`` messages of the queue into this broker's ack set, fairly between tenants
        (lanes.fetch); ``cap`` messages of one tenant at most, counting the ``held`` ones."""
        return lanes.fetch(
            self.fetch_script,
            self.namespace,
            queue_name,
            self.broker_id,
            int(time.time() * 1000),
            room,
            room if cap is None else cap,
            held or {},
            (self.max_running, self.heartbeat_timeout),
        )

    def ack(self, queue_name: str, pairs: list[tuple[str, str]]) -> None:
        """Acknowledge the (redis id, tenant) pairs this broker's consumer holds (lua/ack.lua)."""
        args = [queue_name, self.broker_id, *(x for pair in pairs for x in pair)]
        self.ack_script(keys=[self.namespace], args=args)

    def release(self, queue_name: str, pairs: list[tuple[str, str]]) -> None:
        """Drop the (redis id, tenant) pairs from their tenants' running hashes (a nack, a requeue)."""
        pipe = self.client.pipeline(transaction=False)
        for redis_id, tenant in pairs:
            pipe.hdel(lanes.running_key(self.namespace, queue_name, tenant), redis_id)
        pipe.execute()

    def beat(self) -> None:
        """The heartbeat a fetch gives, for a consumer that has no room to fetch: Dramatiq's
        maintenance and the running caps take a consumer silent this long for a dead one."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: int(time.time() * 1000)})

    def maintain(self, queue_name: str) -> None:
        """Dramatiq's maintenance of a queue, as its own fetch runs it now and then: the messages of
        consumers whose heartbeat stopped go back to the queue's list, whose messages the next
        fetch takes first, and expired dead-lettered messages go."""
        dispatch = self.scripts["dispatch"]
        args = ["fetch", int(time.time() * 1000), queue_name, self.broker_id, self.heartbeat_timeout]
        dispatch(keys=[self.namespace], args=[*args, self.dead_message_ttl, 1, 1, 0])


def build_broker(
    settings: Settings | None = None, middleware: Sequence[Middleware] = (), *, consumer: bool = False
) -> RedisBroker:
    """A broker for this process; call once at process start (never at import).

    Only a worker's broker is a ``consumer``: its client blocks on Redis without a socket timeout.
    Anyone else's (the API's, the scheduler's, the CLI's) publishes and reads with one.
    """
    settings = settings or get_settings()
    return JobyardRedisBroker(
        client=redis_client(settings, socket_timeout=None if consumer else REDIS_SOCKET_TIMEOUT_S),
        namespace=settings.redis_namespace,
        middleware=list(middleware),
        idle_poll_ms=settings.worker_idle_poll_ms,
        batch_max=settings.worker_batch_max,
        max_running=settings.tenant_max_running_per_queue,
    )


@dataclass(frozen=True, slots=True)
class Publication:
    """One message to put on a queue: the job it carries and the Redis id recorded on the job row."""

    job_id: uuid.UUID
    type: str
    queue: str
    message_id: str
    request_id: str | None = None
    #: Whose job it is and how urgent: the lane its message waits in (core/engine/lanes.py).
    tenant: str = DEFAULT_TENANT
    priority: int = DEFAULT_PRIORITY
    #: The W3C trace context the worker's span of the job continues (core/platform/tracing.py).
    traceparent: str | None = None
    #: Published again by the sweeper or by recovery: an earlier message of the job was held by a
    #: worker that died. Such a message runs alone, never in a batch (core/engine/consumer.py).
    redelivered: bool = False


def new_message_id() -> str:
    return str(uuid.uuid4())


def _options(pub: Publication, job_id: str) -> dict[str, Any]:
    """The message's options (``job_id``: ``pub.job_id`` as text, made once by the caller)."""
    options: dict[str, Any] = {
        "redis_message_id": pub.message_id,
        "job_id": job_id,
        TENANT_OPTION: pub.tenant,
    }
    if pub.request_id:
        options["request_id"] = pub.request_id
    if pub.traceparent:
        options[TRACEPARENT] = pub.traceparent
    if pub.redelivered:
        options[REDELIVERED_OPTION] = True
    return options


def message_for(pub: Publication) -> dramatiq.Message[Any]:
    job_id = str(pub.job_id)
    options = _options(pub, job_id)
    return dramatiq.Message(
        queue_name=pub.queue,
        actor_name=pub.type,
        args=(job_id,),
        kwargs={},
        options=options,
        message_id=pub.message_id,
    )


class _WireMessage(msgspec.Struct):
    """Dramatiq's message as its JSON encoder writes it (Message.asdict), encoded by msgspec."""

    queue_name: str
    actor_name: str
    args: tuple[str]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    message_id: str
    message_timestamp: int


_encode_message = msgspec.json.Encoder().encode


def encode_message(pub: Publication, timestamp_ms: int) -> bytes:
    """``pub``'s message as ``publish`` writes it to Redis when the broker has no middleware, with
    ``timestamp_ms`` as its message_timestamp (also to encode messages ahead of their publish)."""
    job_id = str(pub.job_id)
    wire = _WireMessage(
        pub.queue, pub.type, (job_id,), {}, _options(pub, job_id), pub.message_id, timestamp_ms
    )
    return _encode_message(wire)


def publish_commands(
    namespace: str, pubs: Sequence[Publication], encoded: Sequence[bytes] | None = None
) -> list[tuple[Any, ...]]:
    """The Redis commands that publish ``pubs`` (messages encoded here unless given): per queue one
    HSET of the messages, one RPUSH of their ids per lane (tenant and priority, core/engine/lanes.py)
    and one ZADD of their tenants, whatever their number (per-command overhead in redis-py, not
    Redis, is what a large publish spends its time on), then the wake tokens."""
    timestamp = int(time.time() * 1000)
    per_queue: dict[str, tuple[list[str | bytes], dict[tuple[str, int], list[str]]]] = {}
    for i, pub in enumerate(pubs):
        data = encoded[i] if encoded is not None else encode_message(pub, timestamp)
        fields, by_lane = per_queue.setdefault(pub.queue, ([], {}))
        fields += (pub.message_id, data)
        by_lane.setdefault((pub.tenant, pub.priority), []).append(pub.message_id)
    commands: list[tuple[Any, ...]] = []
    for queue, (fields, by_lane) in per_queue.items():
        wake = wake_key(namespace, queue)
        commands.append(("HSET", f"{namespace}:{queue}.msgs", *fields))
        commands += lanes.lane_commands(namespace, queue, by_lane)
        commands += [
            ("RPUSH", wake, *(b"1" for _ in range(min(len(fields) // 2, WAKE_TOKENS)))),
            ("LTRIM", wake, -WAKE_TOKENS, -1),
        ]
    return commands


def publish(
    broker: RedisBroker, publications: Iterable[Publication], encoded: Sequence[bytes] | None = None
) -> int:
    """Put each job's message on its queue under the Redis id already committed on the job row.

    ``RedisBroker.enqueue`` would pick a fresh Redis id and make one round trip per message; this
    writes the queue's layout directly (the message in Dramatiq's ``<ns>:<queue>.msgs``, its id in
    its tenant's lane for its priority, core/engine/lanes.py) in one pipeline, under ids the sweeper
    can look up, and pushes wake tokens for the queue's idle consumers. ``encoded`` holds the
    messages already encoded (``encode_message``), one per publication; a broker with middleware
    encodes its own.
    """
    pubs = list(publications)
    if not pubs:
        return 0
    # Middleware sees each message as a dramatiq.Message; without any, the messages are encoded
    # directly (the stdlib JSON encoder Dramatiq uses is most of a large batch's publish time).
    messages = [message_for(pub) for pub in pubs] if broker.middleware else []
    for message in messages:
        broker.emit_before("enqueue", message, None)
    # One MULTI/EXEC: a message is never in its queue's hash without its id in a lane, nor a lane
    # without its tenant in the ring (the sweeper counts on both), even when the connection breaks
    # mid-pipeline.
    pipe = broker.client.pipeline(transaction=True)
    if messages:
        encoded = [m.encode() for m in messages]
    for command in publish_commands(broker.namespace, pubs, encoded):
        pipe.execute_command(*command)
    pipe.execute()
    for message in messages:
        broker.emit_after("enqueue", message, None)
    return len(pubs)
