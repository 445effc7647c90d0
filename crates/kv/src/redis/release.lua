-- Applies corrections after a request. Runs after `gcra.lua`, whose functions it uses.
--
-- KEYS[i]: the i-th release's key. ARGV[1]: lease id; then four arguments per release:
-- kind ('r', 'c' or 'b') and
--   'r' (rate):        limit, period_ms, delta
--   'c' (concurrency): (unused) x3
--   'b' (budget):      delta, (unused), (unused)

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local lease_id = ARGV[1]

local function rate(key, limit, period_ms, delta)
  local tat = rate_release(tonumber(redis.call('GET', key)), now, limit, period_ms, delta)
  if tat == nil then
    return
  end
  if tat <= now then
    -- A full bucket is the same as no bucket.
    redis.call('DEL', key)
  else
    redis.call('SET', key, int(tat), 'PX', int(ceil_div(tat - now, 1000) + 1000))
  end
end

for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local kind = ARGV[base + 1]
  if kind == 'r' then
    rate(key, tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]))
  elseif kind == 'c' then
    redis.call('ZREM', key, lease_id)
  elseif redis.call('EXISTS', key) == 1 then
    -- A missing budget counter stays missing (see `MemoryLimiter`): INCRBY keeps the expiry.
    redis.call('INCRBY', key, ARGV[base + 2])
  end
end

return 0
