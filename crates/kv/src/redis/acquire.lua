-- Evaluates every check at one instant (Redis's clock) and applies them all only if all pass.
-- Runs after `gcra.lua`, whose functions it uses.
--
-- KEYS[i]: the i-th check's key. ARGV[1]: lease id; ARGV[2]: lease time in ms; ARGV[3]: the
-- retry hint in ms for a refused concurrency check; then four arguments per check: kind ('r', 'c' or 'b') and
--   'r' (rate):        limit, period_ms, cost
--   'c' (concurrency): limit, (unused), (unused)
--   'b' (budget):      limit, cost, expires_at_ms
-- Returns four integers per check: status (0 passed, 1 refused, 2 unseeded), remaining and
-- reset_ms (after applying when admitted, as they stand otherwise), retry_after_ms (-1: none).

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now / 1000)
local lease_id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local concurrency_retry_ms = tonumber(ARGV[3])

local outcomes = {}
local admitted = true
local tats = {}      -- key -> TAT to store
local leases = {}    -- key -> live leases counting this one
local budgets = {}   -- key -> used after this call
local budget_costs = {}
local budget_expiry = {}
local rate_order, lease_order, budget_order = {}, {}, {}

-- Records one check's outcome: the counter as it stands and as it would be once applied.
local function push(status, remaining, reset_ms, retry_ms, applied_remaining, applied_reset_ms)
  if status ~= 0 then
    admitted = false
  end
  outcomes[#outcomes + 1] = {
    status, remaining, reset_ms, retry_ms,
    applied_remaining or remaining, applied_reset_ms or reset_ms,
  }
end

local function budget_remaining(limit, used)
  if used < 0 then
    used = 0
  end
  local remaining = limit - used
  if remaining < 0 then
    remaining = 0
  end
  return remaining
end

local function rate(key, limit, period_ms, cost)
  local tat = tats[key] or tonumber(redis.call('GET', key))
  local status, remaining, reset_ms, retry, applied_remaining, applied_reset_ms, new_tat =
    rate_check(tat, now, limit, period_ms, cost)
  if new_tat ~= nil then
    if tats[key] == nil then
      rate_order[#rate_order + 1] = key
    end
    tats[key] = new_tat
  end
  push(status, remaining, reset_ms, retry, applied_remaining, applied_reset_ms)
end

local function concurrency(key, limit)
  if limit <= 0 then
    return push(1, 0, 0, -1)
  end
  local held, already
  if leases[key] ~= nil then
    held, already = leases[key], true
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now_ms))
    held = redis.call('ZCARD', key)
    already = redis.call('ZSCORE', key, lease_id) ~= false
  end
  local remaining = limit - held
  if remaining < 0 then
    remaining = 0
  end
  if already or held < limit then
    if not already then
      held = held + 1
    end
    if leases[key] == nil then
      lease_order[#lease_order + 1] = key
    end
    leases[key] = held
    local applied_remaining = limit - held
    if applied_remaining < 0 then
      applied_remaining = 0
    end
    push(0, remaining, 0, -1, applied_remaining, 0)
  else
    push(1, remaining, 0, concurrency_retry_ms)
  end
end

local function budget(key, limit, cost, expires_at_ms)
  local used = budgets[key] or tonumber(redis.call('GET', key))
  if used == nil then
    return push(2, limit, 0, -1)
  end
  local remaining = budget_remaining(limit, used)
  if used + cost > limit then
    return push(1, remaining, 0, -1)
  end
  if budgets[key] == nil then
    budget_order[#budget_order + 1] = key
    budget_costs[key] = 0
  end
  budgets[key] = used + cost
  budget_costs[key] = budget_costs[key] + cost
  budget_expiry[key] = expires_at_ms
  push(0, remaining, 0, -1, budget_remaining(limit, used + cost), 0)
end

for i, key in ipairs(KEYS) do
  local base = 3 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local a, b, c = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  if kind == 'r' then
    rate(key, a, b, c)
  elseif kind == 'c' then
    concurrency(key, a)
  else
    budget(key, a, b, c)
  end
end

if admitted then
  for _, key in ipairs(rate_order) do
    local tat = tats[key]
    redis.call('SET', key, int(tat), 'PX', int(ceil_div(tat - now, 1000) + 1000))
  end
  for _, key in ipairs(lease_order) do
    redis.call('ZADD', key, int(now_ms + lease_ms), lease_id)
    redis.call('PEXPIRE', key, int(lease_ms))
  end
  for _, key in ipairs(budget_order) do
    redis.call('INCRBY', key, int(budget_costs[key]))
    redis.call('PEXPIREAT', key, int(budget_expiry[key]))
  end
end

local result = {}
for _, outcome in ipairs(outcomes) do
  local remaining, reset_ms = outcome[2], outcome[3]
  if admitted then
    remaining, reset_ms = outcome[5], outcome[6]
  end
  result[#result + 1] = outcome[1]
  result[#result + 1] = remaining
  result[#result + 1] = reset_ms
  result[#result + 1] = outcome[4]
end
return result
