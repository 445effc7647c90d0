-- The rate arithmetic of `math.rs` in Lua, put before `acquire.lua` and `release.lua`. Lua's
-- numbers are doubles: exact for integers below 2^53 (µs timestamps until the year 2255).
-- `parity_tests.rs` checks these functions against `math.rs`.

-- Numbers go back to Redis as integer strings: Lua's own conversion keeps 14 digits.
local function int(n)
  return string.format('%.0f', n)
end

-- floor(a / b) for integers a >= 0, b > 0, corrected for rounding in the division.
local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function ceil_div(a, b)
  return floor_div(a + b - 1, b)
end

-- ceil(cost * period_us / limit), without forming the product cost * period_us.
local function increment(cost, period_us, limit)
  local q = floor_div(period_us, limit)
  local r = period_us - q * limit
  return cost * q + ceil_div(cost * r, limit)
end

-- Remaining single units and ms until full, for a bucket whose TAT is `tat` (>= now).
local function rate_counter(tat, now, capacity, unit, limit)
  local remaining = 0
  if now + capacity > tat then
    remaining = floor_div(now + capacity - tat, unit)
  end
  if remaining > limit then
    remaining = limit
  end
  return remaining, ceil_div(tat - now, 1000)
end

-- A rate check against the stored TAT (nil when absent). Returns status (0 passed,
-- 1 refused), remaining and reset_ms as the bucket stands, retry_after_ms (-1: never),
-- remaining and reset_ms once applied, and the TAT to store (nil unless passed).
local function rate_check(tat, now, limit, period_ms, cost)
  if limit <= 0 or period_ms <= 0 then
    return 1, 0, 0, -1, 0, 0, nil
  end
  local period_us = period_ms * 1000
  local unit = increment(1, period_us, limit)
  local capacity = limit * unit
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + increment(cost, period_us, limit)
  local remaining, reset_ms = rate_counter(tat, now, capacity, unit, limit)
  if cost <= limit and new_tat - now <= capacity then
    local applied_remaining, applied_reset_ms = rate_counter(new_tat, now, capacity, unit, limit)
    return 0, remaining, reset_ms, -1, applied_remaining, applied_reset_ms, new_tat
  end
  local retry = -1
  if cost <= limit then
    retry = ceil_div(new_tat - capacity - now, 1000)
  end
  return 1, remaining, reset_ms, retry, remaining, reset_ms, nil
end

-- The TAT after `delta` units are added or given back, or nil when nothing is to change.
-- Giving back never moves the TAT before now.
local function rate_release(tat, now, limit, period_ms, delta)
  if limit <= 0 or period_ms <= 0 or delta == 0 then
    return nil
  end
  local adjustment = increment(math.abs(delta), period_ms * 1000, limit)
  if delta < 0 then
    if tat == nil then
      return nil
    end
    tat = tat - adjustment
    if tat < now then
      tat = now
    end
    return tat
  end
  if tat == nil or tat < now then
    tat = now
  end
  return tat + adjustment
end
