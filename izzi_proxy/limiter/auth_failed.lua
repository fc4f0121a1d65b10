-- Count a failed authentication from one IP; block the IP when there are too many.
-- KEYS: 1 the IP's failures (zset), 2 its block marker
-- ARGV: 1 now (ms), 2 max failures, 3 window (ms), 4 block (ms), 5 a unique member
-- Returns the milliseconds the IP is blocked for (0: not blocked).
local blocked = redis.call('PTTL', KEYS[2])
if blocked > 0 then return blocked end
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[4]))
  return tonumber(ARGV[4])
end
return 0
