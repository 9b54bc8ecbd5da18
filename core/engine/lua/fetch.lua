-- Fetch up to `room` messages of one queue for one consumer: the messages given back first, then
-- round robin between the tenants with messages waiting, the most urgent lane of each tenant first.
-- The layout and the reasons are in core/engine/lanes.py.
--
-- KEYS[1]: the namespace.
-- ARGV: queue, broker id, now (ms), room, cap, the farm's running cap per tenant (0: none), the
-- heartbeat timeout (ms), then (tenant, held) pairs: how many messages of each tenant the consumer
-- holds already. A tenant holding `cap` gets nothing more from this call, nor one whose messages
-- held by live consumers reach its running cap.
-- Returns the messages (Dramatiq's encoding), each id put in the consumer's ack set; none while the
-- queue is in the set of paused queues.
local ns = KEYS[1]
local queue, broker, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local room, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local default_running, heartbeat_timeout = tonumber(ARGV[6]), tonumber(ARGV[7])
local base = ns .. ":" .. queue
local msgs = base .. ".msgs"
local acks = ns .. ":__acks__." .. broker .. "." .. queue
local ring = base .. ".tenants"
local clock_key = base .. ".clock"

-- A fetch is the consumer's heartbeat, as Dramatiq's own is (core/engine/locate.py reads it).
redis.call("zadd", ns .. ":__heartbeats__", now, broker)

-- A paused queue gives nothing (core/engine/pauses.py): its messages stay where they are, in order.
if redis.call("sismember", ns .. ":paused-queues", queue) == 1 then
    return {}
end

local out = {}
-- Puts the messages of ``ids`` in ``out`` and their ids in the ack set; returns the ids taken.
local function take(ids)
    local taken = {}
    for _, id in ipairs(ids) do
        -- An id whose message is gone (removed as an orphan, its job published again) is dropped.
        local data = redis.call("hget", msgs, id)
        if data then
            redis.call("sadd", acks, id)
            out[#out + 1] = data
            taken[#taken + 1] = id
        end
    end
    return taken
end

-- Dramatiq's list: messages given back by a consumer (shutdown, or a dead one's), and any published
-- before lanes existed. They were at the front once, and they are few: they go first, uncapped.
if room > 0 then
    local back = redis.call("lpop", base, room)
    if back then
        take(back)
    end
end

local left = {}
for i = 8, #ARGV, 2 do
    left[ARGV[i]] = cap - tonumber(ARGV[i + 1])
end

-- A tenant's running cap: its messages held by live consumers (a hash per queue and tenant, id ->
-- the broker holding it; acks remove them) count against it. A consumer whose heartbeat stopped
-- holds nothing any more: its entries go.
local alive, leases = {}, {}
local function running_room(tenant)
    local limit = tonumber(redis.call("hget", ns .. ":tenant-max-running", tenant) or default_running) or 0
    if limit <= 0 then
        return room
    end
    local key = base .. ".running." .. tenant
    leases[tenant] = key
    local entries = redis.call("hgetall", key)
    local live = 0
    for i = 1, #entries, 2 do
        local holder = entries[i + 1]
        if alive[holder] == nil then
            local beat = redis.call("zscore", ns .. ":__heartbeats__", holder)
            alive[holder] = beat ~= false and tonumber(beat) >= now - heartbeat_timeout
        end
        if alive[holder] then
            live = live + 1
        else
            redis.call("hdel", key, entries[i])
        end
    end
    return math.max(limit - live, 0)
end

local checked = {}
local function allowance(tenant)
    if not checked[tenant] then
        checked[tenant] = true
        left[tenant] = math.min(left[tenant] or cap, running_room(tenant))
    end
    return left[tenant]
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

-- The two lowest scores among the tenants this consumer may still take from, read a page at a time.
local function pick()
    local tenant, score = nil, nil
    local start = 0
    while true do
        local head = redis.call("zrange", ring, start, start + 15, "WITHSCORES")
        for i = 1, #head, 2 do
            if allowance(head[i]) > 0 then
                local s = math.max(tonumber(head[i + 1]), clock)
                if tenant ~= nil then
                    return tenant, score, s
                end
                tenant, score = head[i], s
            end
        end
        if #head < 32 then
            return tenant, score, nil
        end
        start = start + 16
    end
end

local moved = false
while #out < room do
    local tenant, score, next_score = pick()
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
        local taken = take(ids)
        left[tenant] = allowance(tenant) - #ids
        if leases[tenant] then
            for _, id in ipairs(taken) do
                redis.call("hset", leases[tenant], id, broker)
            end
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
