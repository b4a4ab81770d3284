-- tollgate: decide and charge one request's limits on one Redis node,
-- atomically. The Lua twin of src/limit/{bucket,window,mod}.rs: every
-- formula is written in the same order as there, so doubles round alike;
-- tests/decisions.rs runs one suite against both.
--
-- KEYS[i]  the state key of debit i (debits on one key see each other's
--          charges in order; every key of a call shares one hash tag)
-- ARGV[1]  mode: "charge" (all or nothing), "peek" (decide, write nothing)
--          or "refund" (give debits back: a cross-node request that was
--          rejected on a later node)
-- ARGV[2]  now in microseconds, or "" to read Redis TIME (production: one
--          clock for every replica)
-- ARGV[3]  TTL slack in milliseconds, added to every key's expiry
-- then per debit i, five values from ARGV[4 + 5(i-1)]:
--          "b", cost, capacity, per_minute, gate  token bucket
--          "w", cost, window, limit, gate         window: 0 = calendar month
--                                                 (UTC), else seconds;
--                                                 limit -1 = count only
--          gate: 0 enforce (a rejection rejects the request), 1 shadow
--          (never rejects), 2 quota mode (rejects only if every quota-mode
--          debit is rejected); shadow and quota debits are charged only
--          when allowed
-- Returns {admitted, now_us, then per debit: allowed, remaining, reset_us,
-- retry_us}; remaining -1 = unlimited.
-- State: bucket "<tokens> <at_us>", window "<index> <used>" (strings, %.17g
-- so doubles round-trip exactly); every write sets a TTL.

local MINUTE_US = 60000000
local DAY_US = 86400000000
local EPSILON = 1e-9

local mode = ARGV[1]
local now
if ARGV[2] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local slack_ms = tonumber(ARGV[3])

local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

-- Howard Hinnant's civil_from_days / days_from_civil, days since 1970.
local function civil_from_days(days)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return year, month
end

local function days_from_civil(year, month, day)
  local y = month <= 2 and year - 1 or year
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = month > 2 and month - 3 or month + 9
  local doy = floor((153 * mp + 2) / 5) + day - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function window_start(window, index)
  if window == 0 then
    return days_from_civil(floor(index / 12), index % 12 + 1, 1) * DAY_US
  end
  return index * window * 1000000
end

local function window_index(window, t)
  if window == 0 then
    local year, month = civil_from_days(floor(t / DAY_US))
    return year * 12 + (month - 1)
  end
  return floor(t / (window * 1000000))
end

local function refill_us(deficit, per_minute)
  if deficit <= 0 then return 0 end
  if per_minute == 0 then return 9007199254740991 end
  local us = deficit * MINUTE_US / per_minute
  return ceil(floor(us * 1000 + 0.5) / 1000)
end

-- Parsed debits.
local debits = {}
for i = 1, #KEYS do
  local base = 4 + 5 * (i - 1)
  debits[i] = {
    key = KEYS[i], kind = ARGV[base], cost = tonumber(ARGV[base + 1]),
    a = tonumber(ARGV[base + 2]), b = tonumber(ARGV[base + 3]),
    gate = tonumber(ARGV[base + 4]),
  }
end

-- Stored states, read once per key: {x, y} or false.
local states = {}
for i = 1, #debits do
  local key = debits[i].key
  if states[key] == nil then
    local raw = redis.call("GET", key)
    if raw then
      local x, y = string.match(raw, "^(%S+) (%S+)$")
      states[key] = {tonumber(x), tonumber(y)}
    else
      states[key] = false
    end
  end
end

-- Charges `cost` on `state`; returns outcome {allowed, remaining, reset,
-- retry}, the state to store, and its TTL in milliseconds.
local function charge(d, state, cost)
  if d.kind == "b" then
    local capacity, per_minute = d.a, d.b
    local tokens = capacity
    if state then
      local elapsed = max(0, now - state[2])
      tokens = min(capacity, state[1] + elapsed * per_minute / MINUTE_US)
    end
    local allowed = tokens + EPSILON >= cost
    local after = tokens
    if allowed then after = max(0, tokens - cost) end
    local retry = 0
    if not allowed then
      if cost > capacity then
        retry = refill_us(capacity - tokens, per_minute)
      else
        retry = refill_us(cost - tokens, per_minute)
      end
    end
    local at = now
    if state then at = max(state[2], now) end
    local reset = refill_us(capacity - after, per_minute)
    return {allowed, floor(after + EPSILON), reset, retry}, {after, at}, ceil(reset / 1000)
  else
    local window, limit = d.a, d.b
    local index = window_index(window, now)
    local used = 0
    if state and state[1] == index then used = state[2] end
    local allowed = limit < 0 or used + cost <= limit
    local after = used
    if allowed then after = used + cost end
    local until_end = window_start(window, index + 1) - now
    local remaining = -1
    if limit >= 0 then remaining = max(0, limit - after) end
    local retry = 0
    if not allowed then retry = until_end end
    return {allowed, remaining, until_end, retry}, {index, after}, ceil(until_end / 1000)
  end
end

local function encode(state)
  return string.format("%.17g %.17g", state[1], state[2])
end

if mode == "refund" then
  for i = 1, #debits do
    local d = debits[i]
    local state = states[d.key]
    if state then
      if d.kind == "b" then
        local _, current = charge(d, state, 0)
        current[1] = min(d.a, current[1] + d.cost)
        states[d.key] = current
        redis.call("SET", d.key, encode(current), "PX", slack_ms + ceil(refill_us(d.a - current[1], d.b) / 1000) + 1)
      elseif state[1] == window_index(d.a, now) then
        state[2] = max(0, state[2] - d.cost)
        redis.call("SET", d.key, encode(state), "PX", slack_ms + ceil((window_start(d.a, state[1] + 1) - now) / 1000) + 1)
      end
    end
  end
  return {1, now}
end

-- Decide on working copies; write only if every debit is allowed.
local working, ttl = {}, {}
for key, state in pairs(states) do working[key] = state end
local outcomes = {}
local enforced, quota_seen, quota_allowed = true, false, false
for i = 1, #debits do
  local d = debits[i]
  local outcome, next_state, ttl_ms = charge(d, working[d.key], d.cost)
  if outcome[1] then
    working[d.key] = next_state
    ttl[d.key] = max(ttl[d.key] or 0, ttl_ms)
  end
  if d.gate == 0 then
    enforced = enforced and outcome[1]
  elseif d.gate == 2 then
    quota_seen = true
    quota_allowed = quota_allowed or outcome[1]
  end
  outcomes[i] = outcome
end
local admitted = enforced and (not quota_seen or quota_allowed)

if admitted then
  if mode == "charge" then
    for key, ms in pairs(ttl) do
      redis.call("SET", key, encode(working[key]), "PX", slack_ms + ms + 1)
    end
  end
else
  -- Nothing is charged: an allowed debit reports what it had before.
  for i = 1, #debits do
    if outcomes[i][1] then
      outcomes[i] = charge(debits[i], states[debits[i].key], 0)
    end
  end
end

local reply = {admitted and 1 or 0, now}
for i = 1, #debits do
  local o = outcomes[i]
  reply[#reply + 1] = o[1] and 1 or 0
  reply[#reply + 1] = o[2]
  reply[#reply + 1] = o[3]
  reply[#reply + 1] = o[4]
end
return reply
