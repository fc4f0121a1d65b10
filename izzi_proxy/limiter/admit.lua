-- Admit one request, or say why not, atomically. Consumes nothing unless everything passes.
-- KEYS: 1 the account's GCRA timestamp, 2 its leases (zset lease -> expiry), 3 its counter
--       for the UTC day, 4 the client IP's block marker
-- ARGV: 1 now (ms), 2 rpm, 3 concurrent, 4 daily, 5 lease id, 6 lease ttl (ms),
--       7 day counter ttl (ms), 8 "1" to check the IP, 9 "1" to consume (0: peek)
-- Returns {allowed, reason, retry_after_ms, remaining, reset_at_ms, in_flight, used_today}
-- (numbers as strings: Redis would truncate Lua floats).
-- KEYS[1] holds "<tat> <latest now counted>": a request stamped (by its process) before one
-- already counted is counted at that one's time, so several processes' requests arriving
-- out of order are not refused for it.
local rpm, concurrent, daily = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local interval = 60000 / rpm
local saved = redis.call('GET', KEYS[1]) or '0'
local tat_text, seen_text = string.match(saved, '^(%S+)%s*(%S*)$')
local tat = tonumber(tat_text) or 0
local now = math.max(tonumber(ARGV[1]), tonumber(seen_text) or 0)
local start = math.max(tat, now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[2])
local used = tonumber(redis.call('GET', KEYS[3]) or '0')

local function remaining(t)
  return math.max(0, math.floor((rpm * interval - (t - now)) / interval + 1e-9))
end
local function answer(allowed, reason, retry, left, reset, flying, today)
  return {tostring(allowed), reason, tostring(retry), tostring(left), tostring(reset), tostring(flying), tostring(today)}
end

if ARGV[8] == '1' then
  local blocked = redis.call('PTTL', KEYS[4])
  if blocked > 0 then return answer(0, 'ip', blocked, remaining(start), start, in_flight, used) end
end
if ARGV[9] ~= '1' then return answer(1, '', 0, remaining(start), start, in_flight, used) end
if used >= daily then return answer(0, 'daily', -1, remaining(start), start, in_flight, used) end
if start - now > (rpm - 1) * interval + 1e-6 then
  return answer(0, 'rpm', start - now - (rpm - 1) * interval, 0, start, in_flight, used)
end
if in_flight >= concurrent then
  local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return answer(0, 'concurrent', math.min(1000, tonumber(soonest[2]) - now), remaining(start), start, in_flight, used)
end
local new_tat = start + interval
redis.call('SET', KEYS[1], tostring(new_tat) .. ' ' .. tostring(now), 'PX', math.ceil(new_tat - now) + 1000)
local ttl = tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl * 2)
used = redis.call('INCR', KEYS[3])
if used == 1 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[7])) end
return answer(1, '', 0, remaining(new_tat), new_tat, in_flight + 1, used)
