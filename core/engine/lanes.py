"""Lanes: where a queue's messages wait in Redis, one list per tenant and priority, and how they are
taken out so that the tenants share the workers and priority orders each tenant's share.

A single list per queue (Dramatiq's layout) serves whoever published first: one tenant's backlog of
100,000 jobs holds every worker until it is done, and an urgent job waits behind all of it. So a
queue ``q`` of namespace ``ns`` keeps, in Redis:

    ns:q.msgs                  hash, id -> message       Dramatiq's, unchanged
    ns:q.lane.<tenant>.<p>     list of ids               new messages of that tenant and priority
    ns:q.tenants               sorted set                the tenants with messages in a lane
    ns:q.clock                 string                    the queue's virtual clock (below)
    ns:q                       list of ids               Dramatiq's: messages given back, first out
    ns:__acks__.<broker>.q     set of ids                Dramatiq's: fetched by a consumer, not acked
    ns:q.running.<tenant>      hash, id -> broker id     held by a consumer, for a tenant with a
                                                         running cap (acks remove them)
    ns:tenant-weights          hash, tenant -> weight    a tenant's own limits, mirrored from
    ns:tenant-max-running      hash, tenant -> jobs      Postgres (core/access/quotas.py); absent:
    ns:tenant-max-queued       hash, tenant -> jobs      the farm's setting (weight 1)
    ns:tenant-rate             hash, tenant -> per s

Publishing (core/engine/broker.py) writes the message to the hash, its id to its lane and the
tenant into ``ns:q.tenants``, in one MULTI/EXEC. Workers fetch with one script (lua/fetch.lua),
atomic like every Redis script, that:

1. takes first what ``ns:q`` holds: messages Dramatiq gave back (a consumer's requeue at shutdown,
   its maintenance returning a dead consumer's messages) and any published before lanes existed.
   They are few, and they were at the front once;
2. then serves the tenants by weighted fair queuing on a virtual clock: each tenant's score in
   ``ns:q.tenants`` is the virtual time at which its next message starts; the lowest score goes
   next, and taking ``n`` of its messages adds ``n / weight``. Tenants of equal weight thus
   alternate one message at a time, a tenant alone takes all it may in one go, and one that
   arrives (published with score 0) is raised to the clock: it goes next, but banks no credit for
   the time it had nothing queued. Within a tenant, the most urgent lane (priority 9) first, each
   lane first in, first out.

The ack sets, the hash and Dramatiq's ack, nack, requeue and maintenance are unchanged, so a message
is still in the hash while its id is in a lane, in ``ns:q`` or in an ack set. What reads the
waiting messages reads all three through here: ``waiting_counts`` (GET /v1/queues, /metrics),
``WAITING_LUA`` (core/engine/locate.py, the sweeper's look-up) and ``waiting_ids`` (its orphan
check, which also puts back into the ring a tenant whose lane lost its place there).

The script gives each consumer a cap per tenant (core/engine/consumer.py): a worker is never filled
with one tenant's messages, so another tenant's job published now is fetched now, not after the
worker's local backlog. A tenant with a running cap (JOBYARD_TENANT_MAX_RUNNING_PER_QUEUE, or its
own) gets nothing more once the messages live consumers hold of it reach the cap; a consumer whose
heartbeat stopped holds nothing any more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from importlib.resources import files
from typing import Any, cast

import redis
import structlog
from redis.commands.core import Script

from core.platform.tenants import DEFAULT_TENANT

log = structlog.get_logger(__name__)

#: Priorities run from 0 to 9; 9 is the most urgent.
MIN_PRIORITY, MAX_PRIORITY = 0, 9
DEFAULT_PRIORITY = 5
PRIORITIES = range(MIN_PRIORITY, MAX_PRIORITY + 1)
#: Option of a published message: its tenant, read back by the consumer to count what it holds.
TENANT_OPTION = "jobyard_tenant"
#: The hashes of the tenants' own limits (tenant -> value), as ``tenant_limits_key`` names them.
WEIGHTS, MAX_RUNNING, MAX_QUEUED, RATE = "weights", "max-running", "max-queued", "rate"
#: Ids per LRANGE when a lane is read whole: Redis stays responsive between steps.
_CHUNK = 10_000

FETCH_SCRIPT = (files("core.engine") / "lua" / "fetch.lua").read_text(encoding="utf-8")
ACK_SCRIPT = (files("core.engine") / "lua" / "ack.lua").read_text(encoding="utf-8")

#: A Lua function for the scripts that count waiting messages (core/engine/locate.py too): those in
#: Dramatiq's list and in every lane of the tenants in the ring.
WAITING_LUA = f"""
local function waiting(ns, queue)
    local base = ns .. ":" .. queue
    local n = redis.call("llen", base)
    for _, tenant in ipairs(redis.call("zrange", base .. ".tenants", 0, -1)) do
        for p = {MIN_PRIORITY}, {MAX_PRIORITY} do
            n = n + redis.call("llen", base .. ".lane." .. tenant .. "." .. p)
        end
    end
    return n
end
"""

#: KEYS[1]: the namespace; ARGV: a tenant, the farm's cap on queued jobs, then queues. Returns the
#: tenant's cap (its own, or the farm's) and, unless it is 0 (no cap), its messages waiting in those
#: queues' lanes.
TENANT_WAITING_LUA = f"""
local ns, tenant = KEYS[1], ARGV[1]
local cap = tonumber(redis.call("hget", ns .. ":tenant-{MAX_QUEUED}", tenant) or ARGV[2]) or 0
local n = 0
if cap > 0 then
    for i = 3, #ARGV do
        for p = {MIN_PRIORITY}, {MAX_PRIORITY} do
            n = n + redis.call("llen", ns .. ":" .. ARGV[i] .. ".lane." .. tenant .. "." .. p)
        end
    end
end
return {{cap, n}}
"""

#: KEYS[1]: the namespace; ARGV: queues. Returns each one's waiting messages.
_COUNT_LUA = (
    WAITING_LUA
    + """
local out = {}
for i, queue in ipairs(ARGV) do out[i] = waiting(KEYS[1], queue) end
return out
"""
)


def lane_key(namespace: str, queue: str, tenant: str, priority: int) -> str:
    return f"{namespace}:{queue}.lane.{tenant}.{priority}"


def ring_key(namespace: str, queue: str) -> str:
    """The sorted set of the queue's tenants with messages in a lane."""
    return f"{namespace}:{queue}.tenants"


def tenant_limits_key(namespace: str, name: str) -> str:
    return f"{namespace}:tenant-{name}"


def weights_key(namespace: str) -> str:
    return tenant_limits_key(namespace, WEIGHTS)


def running_key(namespace: str, queue: str, tenant: str) -> str:
    """The hash of the messages of ``tenant`` that consumers hold, for its running cap."""
    return f"{namespace}:{queue}.running.{tenant}"


def lane_commands(
    namespace: str, queue: str, ids_by_lane: Mapping[tuple[str, int], list[str]]
) -> list[tuple[Any, ...]]:
    """The commands that put message ids (already in the queue's hash) in their lanes, for a
    publish's MULTI/EXEC: an RPUSH per lane, and one ZADD NX of their tenants at score 0, which
    the fetch raises to the queue's clock (a tenant already in the ring keeps its score)."""
    commands: list[tuple[Any, ...]] = [
        ("RPUSH", lane_key(namespace, queue, tenant, priority), *ids)
        for (tenant, priority), ids in ids_by_lane.items()
    ]
    tenants = sorted({tenant for tenant, _ in ids_by_lane})
    commands.append(("ZADD", ring_key(namespace, queue), "NX", *(x for t in tenants for x in (0, t))))
    return commands


def waiting_counts(client: redis.Redis, namespace: str, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (fetched ones sit in their consumer's ack set), one round trip."""
    names = sorted(set(queues))
    if not names:
        return {}
    counts = cast(list[int], client.register_script(_COUNT_LUA)(keys=[namespace], args=names))
    return dict(zip(names, (int(n) for n in counts), strict=True))


def _glob(text: str) -> str:
    """``text`` with the characters SCAN's MATCH reads as a pattern escaped."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def lanes_of(client: redis.Redis, namespace: str, queue: str) -> list[tuple[str, str]]:
    """(key, tenant) of every lane of ``queue`` that exists, found by SCAN (ring or not)."""
    prefix = f"{namespace}:{queue}.lane."
    found = []
    for raw in client.scan_iter(match=_glob(prefix) + "*", count=1000):
        key = raw.decode()
        tenant, _, priority = key[len(prefix) :].rpartition(".")
        if tenant and priority.isdigit():
            found.append((key, tenant))
    return found


def waiting_ids(client: redis.Redis, namespace: str, queue: str) -> Iterator[bytes]:
    """Every id waiting in ``queue``: Dramatiq's list, then each lane. O(backlog), in chunks.

    A lane whose tenant is missing from the ring (only a hand outside Jobyard breaks that rule) would
    never be fetched: its tenant is put back, and it is served again.
    """
    lists = [f"{namespace}:{queue}"]
    ring = ring_key(namespace, queue)
    for key, tenant in lanes_of(client, namespace, queue):
        lists.append(key)
        if client.zadd(ring, {tenant: 0}, nx=True):
            log.warning("lane_back_in_ring", queue=queue, tenant=tenant)
    for key in lists:
        # From the tail: consumers pop at the head, which moves no index counted from the tail.
        end = -1
        while chunk := cast(list[bytes], client.lrange(key, end - _CHUNK + 1, end)):
            yield from chunk
            if len(chunk) < _CHUNK:
                break
            end -= _CHUNK


def fetch(
    script: Script,
    namespace: str,
    queue: str,
    broker_id: str,
    now_ms: int,
    room: int,
    cap: int,
    held: Mapping[str, int],
    running: tuple[int, int] = (0, 60_000),
) -> list[bytes]:
    """Up to ``room`` messages of ``queue`` for the consumer ``broker_id``, which holds ``held``
    messages of each tenant already and may hold ``cap`` of one tenant. ``running``: the farm's
    running cap per tenant (0: none) and the heartbeat timeout (ms) past which a consumer holds
    nothing. ``script`` is FETCH_SCRIPT registered on the client to use (see lua/fetch.lua)."""
    args: list[Any] = [queue, broker_id, now_ms, room, cap, *running]
    for tenant, n in held.items():
        if n > 0:
            args += [tenant, n]
    return cast(list[bytes], script(keys=[namespace], args=args))


def tenant_of(options: Mapping[str, Any]) -> str:
    """The tenant of a message; one published before lanes carries none and is ``default``'s."""
    return str(options.get(TENANT_OPTION) or DEFAULT_TENANT)
