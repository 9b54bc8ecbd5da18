-- wrk: POST the body in BENCH_BODY_FILE with a fresh random API key on every request: `jy_` and 32
-- URL-safe characters, the shape of a real key, so each one passes the format check and is a key
-- the API has never seen. After BENCH_REQUESTS answers it prints "bench-flood-done" (the harness
-- then stops wrk) and counts the answers by status.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "5000")
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local answered = 0
c401, c429, c503, cother = 0, 0, 0, 0

function init(args)
  math.randomseed(os.time() + (seed or 0))
end

local function random_key()
  local chars = {}
  for i = 1, 32 do
    local n = math.random(1, 64)
    chars[i] = alphabet:sub(n, n)
  end
  return "jy_" .. table.concat(chars)
end

function request()
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. random_key()}
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status == 401 then c401 = c401 + 1
  elseif status == 429 then c429 = c429 + 1
  elseif status == 503 then c503 = c503 + 1
  else cother = cother + 1 end
  if answered == limit then
    io.write("bench-flood-done\n")
    io.flush()
  end
end

local threads = {}
function setup(thread)
  thread:set("seed", #threads + 1)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local t = threads[1]
  io.write(string.format("statuses 401=%d 429=%d 503=%d other=%d\n",
    t:get("c401"), t:get("c429"), t:get("c503"), t:get("cother")))
end
