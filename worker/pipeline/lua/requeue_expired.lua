-- KEYS[1]=inflight_ss KEYS[2]=due_ss KEYS[3]=stats  ARGV[1]=limit
-- Claimed threads whose reflection never finished (dispatcher or worker died) become due again.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(lost) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], now, m)
end
if #lost > 0 then redis.call('HINCRBY', KEYS[3], 'requeued', #lost) end
return #lost
