-- GCRA, the generic cell rate algorithm, on Redis's clock (hosts need not agree): every rate limit of
-- Jobyard, the API keys', the failed authentications' and the WhatsApp send rate. Loaded once by
-- core/platform/ratelimit.py (GCRA_SCRIPT).
--
-- KEYS[1]: the theoretical arrival time (µs) of the next request; requests are ARGV[1] µs apart.
-- ARGV[2]: the tolerance (µs): a request is let through while that time is at most this far ahead of
-- now less one interval (a burst of n: n intervals; a wait of at most w for one slot: w + 1 interval).
-- ARGV[3]: the requests asked for (default 1): as many are granted as the budget holds now, at least
-- one or none.
-- Returns {granted, retry after (µs, when none), remaining, reset (µs until the budget is whole),
-- wait (µs until the first granted slot, or the next free one)}. Integers as %.0f strings: Lua
-- numbers are doubles, and tostring() would round a µs timestamp to 14 digits.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local asked = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = string.format('%.0f', tat - now)
local available = math.floor((now + tolerance - tat) / interval)
if available < 1 then
  return {0, string.format('%.0f', tat + interval - tolerance - now), 0, wait, wait}
end
local granted = math.min(asked, available)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, '0', available - granted, string.format('%.0f', new_tat - now), wait}
