-- Acknowledge messages of one queue for one consumer, as Dramatiq's ack does one by one: drop each
-- id from the consumer's ack set and, if it was there, its message from the hash; and drop it from
-- its tenant's hash of held messages, which counts against the tenant's running cap
-- (core/engine/lanes.py). Atomic, so no one sees a message in neither (the sweeper would count it
-- orphaned).
--
-- KEYS[1]: the namespace. ARGV: queue, broker id, then (id, tenant) pairs.
local ns, queue, broker = KEYS[1], ARGV[1], ARGV[2]
local base = ns .. ":" .. queue
local acks = ns .. ":__acks__." .. broker .. "." .. queue
for i = 3, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call("srem", acks, id) > 0 then
        redis.call("hdel", base .. ".msgs", id)
    end
    redis.call("hdel", base .. ".running." .. ARGV[i + 1], id)
end
return 1
