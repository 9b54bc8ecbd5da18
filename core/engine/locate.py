"""Where a published message is, for the sweeper: waiting in its queue, fetched by a consumer, or gone.

A message is in its queue's hash (``<ns>:<queue>.msgs``) while its id waits in one of the queue's
lists (a lane of its tenant, or Dramatiq's ``<ns>:<queue>``, core/engine/lanes.py) or sits in the
ack set of the consumer that fetched it (``<ns>:__acks__.<broker id>.<queue>``, one per broker id
in ``<ns>:__heartbeats__``, which every fetch updates). Every write to these keys, Dramatiq's
scripts and Jobyard's MULTI/EXEC publish, fetch script and batch ack, keeps that true. So a message
in the hash and in no ack set is waiting, and the sweeper can tell where each message is without
reading the lists: the cost of a look-up grows with the messages looked up, the consumers and the
tenants with work, never with the backlog.

Only a hand outside Jobyard and Dramatiq breaks the rule (a key evicted under a ``maxmemory``
policy other than ``noeviction``, a list deleted by hand). The look-up sees it in the counts (hash
minus waiting minus ack sets above zero), and the queue's orphaned messages are then found by
reading its lists and removed, so their jobs are published again; that read costs O(backlog) and
is done at most every ``ORPHAN_CHECK_EVERY_S`` per queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import structlog
from dramatiq.brokers.redis import RedisBroker

from core.engine.broker import Publication
from core.engine.lanes import WAITING_LUA, waiting_ids

log = structlog.get_logger(__name__)

#: Where a published message is: waiting in its queue, fetched by a consumer (and not acked yet),
#: or gone from Redis.
WAITING, MISSING = "waiting", "missing"
#: How often at most a queue whose counts show orphaned messages has its list read to find them: an
#: O(backlog) read, for a Redis that lost part of a queue, shared by every scheduler.
ORPHAN_CHECK_EVERY_S = 60
#: Ids per HSCAN step when a queue's hash is read whole: Redis stays responsive between steps.
_CHUNK = 10_000

#: One atomic round trip. KEYS: the namespace. ARGV: per queue, its name, the number of ids, the ids.
#: Returns per id "" (gone), "+" (waiting) or the broker id holding it, and after each queue's ids
#: its surplus: messages in the hash minus those waiting and in the ack sets (0 or less normally).
_LOCATE_LUA = (
    WAITING_LUA
    + """
local ns = KEYS[1]
local brokers = redis.call("zrange", ns .. ":__heartbeats__", 0, -1)
local out = {}
local i = 1
while i <= #ARGV do
    local queue, n = ARGV[i], tonumber(ARGV[i + 1])
    local msgs = ns .. ":" .. queue .. ".msgs"
    local holder, held = {}, 0
    for _, broker in ipairs(brokers) do
        local ids = redis.call("smembers", ns .. ":__acks__." .. broker .. "." .. queue)
        held = held + #ids
        for _, id in ipairs(ids) do holder[id] = broker end
    end
    for j = i + 2, i + 1 + n do
        local id = ARGV[j]
        if redis.call("hexists", msgs, id) == 0 then
            out[#out + 1] = ""
        else
            out[#out + 1] = holder[id] or "+"
        end
    end
    out[#out + 1] = redis.call("hlen", msgs) - waiting(ns, queue) - held
    i = i + 2 + n
end
return out
"""
)


def locate_messages(broker: RedisBroker, pubs: Sequence[Publication]) -> list[str]:
    """For each publication: WAITING, MISSING, or the Dramatiq broker id of the consumer holding it."""
    if not pubs:
        return []
    by_queue: dict[str, list[int]] = {}
    for i, pub in enumerate(pubs):
        by_queue.setdefault(pub.queue, []).append(i)
    args: list[str | int] = []
    for queue, indexes in by_queue.items():
        args += [queue, len(indexes), *(pubs[i].message_id for i in indexes)]
    script = broker.client.register_script(_LOCATE_LUA)
    reply = iter(cast(list[Any], script(keys=[broker.namespace], args=args)))
    where = [MISSING] * len(pubs)
    for queue, indexes in by_queue.items():
        for i in indexes:
            found = next(reply)
            where[i] = MISSING if found == b"" else WAITING if found == b"+" else found.decode()
        surplus = int(next(reply))
        unheld = [i for i in indexes if where[i] == WAITING]
        if surplus > 0 and unheld:
            orphans = remove_orphans(broker, queue, surplus)
            for i in unheld:
                if pubs[i].message_id in orphans:
                    where[i] = MISSING
    return where


def remove_orphans(broker: RedisBroker, queue: str, surplus: int) -> set[str]:
    """Delete the messages of ``queue`` that are in none of its lists nor an ack set; their ids.

    Nothing when another pass did this within ``ORPHAN_CHECK_EVERY_S``. The hash is read first: a
    message published later is not looked at, and one fetched meanwhile is in an ack set by the
    time those are read. A message requeued at that very moment may be taken for an orphan; its
    job is then published again by the sweeper, a delay and never a loss.
    """
    ns, client = broker.namespace, broker.client
    if not client.set(f"{ns}:{queue}.orphan-check", 1, nx=True, ex=ORPHAN_CHECK_EVERY_S):
        return set()
    stored = {key for key, _ in client.hscan_iter(f"{ns}:{queue}.msgs", count=_CHUNK)}
    stored.difference_update(waiting_ids(client, ns, queue))
    for broker_id in cast(list[bytes], client.zrange(f"{ns}:__heartbeats__", 0, -1)):
        stored.difference_update(
            cast(set[bytes], client.smembers(f"{ns}:__acks__.{broker_id.decode()}.{queue}"))
        )
    orphans = sorted(stored)
    for start in range(0, len(orphans), _CHUNK):
        client.hdel(f"{ns}:{queue}.msgs", *orphans[start : start + _CHUNK])
    log.warning("queue_messages_orphaned", queue=queue, counted=surplus, removed=len(orphans))
    return {o.decode() for o in orphans}
