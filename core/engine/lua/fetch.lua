-- Fetch up to `room` messages of one queue for one consumer: the messages given back first, then
-- round robin between the tenants with messages waiting, the most urgent lane of each tenant first.
-- The layout and the reasons are in core/engine/lanes.py.
--
-- KEYS[1]: the namespace.
-- ARGV: queue, broker id, now (ms), room, cap, then (tenant, held) pairs: how many messages of
-- each tenant the consumer holds already. A tenant holding `cap` gets nothing more from this call.
-- Returns the messages (Dramatiq's encoding), each id put in the consumer's ack set.
local ns = KEYS[1]
local queue, broker, now = ARGV[1], ARGV[2], ARGV[3]
local room, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local base = ns .. ":" .. queue
local msgs = base .. ".msgs"
local acks = ns .. ":__acks__." .. broker .. "." .. queue
local ring = base .. ".tenants"
local clock_key = base .. ".clock"

-- A fetch is the consumer's heartbeat, as Dramatiq's own is (core/engine/locate.py reads it).
redis.call("zadd", ns .. ":__heartbeats__", now, broker)

local out = {}
local function take(ids)
    for _, id in ipairs(ids) do
        -- An id whose message is gone (removed as an orphan, its job published again) is dropped.
        local data = redis.call("hget", msgs, id)
        if data then
            redis.call("sadd", acks, id)
            out[#out + 1] = data
        end
    end
end

-- Dramatiq's list: messages given back by a consumer (shutdown, or a dead one's), and any published
-- before lanes existed. They were at the front once, and they are few: they go first, uncapped.
if room > 0 then
    local back = redis.call("lpop", base, room)
    if back then
        take(back)
    end
end

local left, blocked = {}, 0
for i = 6, #ARGV, 2 do
    local allowed = cap - tonumber(ARGV[i + 1])
    left[ARGV[i]] = allowed
    if allowed <= 0 then
        blocked = blocked + 1
    end
end
local function allowance(tenant)
    return left[tenant] or cap
end

local weights = {}
local function weight(tenant)
    if weights[tenant] == nil then
        local w = tonumber(redis.call("hget", ns .. ":tenant-weights", tenant) or "1") or 1
        weights[tenant] = (w > 0) and w or 1
    end
    return weights[tenant]
end

-- Per tenant, the priority of its most urgent lane seen with messages in this call.
local top = {}
local function top_lane(tenant)
    local p = top[tenant] or 9
    while p >= 0 do
        local key = base .. ".lane." .. tenant .. "." .. p
        if redis.call("llen", key) > 0 then
            top[tenant] = p
            return key, p
        end
        p = p - 1
    end
    return nil, -1
end

-- Fair queuing on a virtual clock: each tenant's score is the virtual time its next message starts
-- at; the lowest goes next, and taking n messages adds n / weight. The clock is the start of the
-- last message taken; a tenant that joins (published with score 0) starts at the clock, so it goes
-- next but banks no credit for the time it had nothing queued.
local clock = tonumber(redis.call("get", clock_key) or "0")
local moved = false
while #out < room do
    -- The two lowest scores among tenants this consumer may still take from.
    local head = redis.call("zrange", ring, 0, blocked + 1, "WITHSCORES")
    local tenant, score, next_score = nil, nil, nil
    for i = 1, #head, 2 do
        if allowance(head[i]) > 0 then
            local s = math.max(tonumber(head[i + 1]), clock)
            if tenant == nil then
                tenant, score = head[i], s
            else
                next_score = s
                break
            end
        end
    end
    if tenant == nil then
        break
    end
    local lane, p = top_lane(tenant)
    if lane == nil then
        -- A tenant without messages (its lanes deleted by hand) leaves the ring.
        redis.call("zrem", ring, tenant)
    else
        local w = weight(tenant)
        -- Its turn lasts while its messages start before the next tenant's: one message when both
        -- are level (a tie goes to the other), everything it is allowed when it is alone.
        local n = math.min(room - #out, allowance(tenant))
        if next_score ~= nil then
            n = math.min(n, math.max(1, math.ceil((next_score - score) * w - 1e-9)))
        end
        local ids = redis.call("lpop", lane, n) or {}
        take(ids)
        left[tenant] = allowance(tenant) - #ids
        if left[tenant] <= 0 then
            blocked = blocked + 1
        end
        -- The clock is the start of the last message taken: one that joins now competes from there.
        local last = score + (#ids - 1) / w
        if clock < last then
            clock = last
            moved = true
        end
        if redis.call("llen", lane) == 0 then
            top[tenant] = p - 1
            lane = top_lane(tenant)
        end
        if lane == nil then
            redis.call("zrem", ring, tenant)
        else
            redis.call("zadd", ring, score + #ids / w, tenant)
        end
    end
end
if moved then
    redis.call("set", clock_key, clock)
end
return out
