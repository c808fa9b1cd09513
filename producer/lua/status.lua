-- KEYS[1]=due_ss KEYS[2]=inflight_ss KEYS[3]=dlq (of the user's shard), then per thread
-- KEYS[2+2i]=buffer KEYS[3+2i]=thread (i = 1..n)
-- ARGV[1]=n ARGV[2..n+1]=member of each thread ARGV[n+2..]=thread-hash fields to read
-- Read only, atomic (a consistent view, as a MULTI was). Returns {seconds, microseconds, then per
-- thread: buffered turns, due score or nil, in-flight deadline or nil, dead-lettered 0|1, the
-- fields' values (nil when unset)}.
local t = redis.call('TIME')
local out = {t[1], t[2]}
local n = tonumber(ARGV[1])
for i = 1, n do
  local m = ARGV[1 + i]
  table.insert(out, redis.call('LLEN', KEYS[2 + 2 * i]))
  table.insert(out, redis.call('ZSCORE', KEYS[1], m))
  table.insert(out, redis.call('ZSCORE', KEYS[2], m))
  table.insert(out, redis.call('HEXISTS', KEYS[3], m))
  local values = redis.call('HMGET', KEYS[3 + 2 * i], unpack(ARGV, n + 2))
  for f = 1, #ARGV - n - 1 do table.insert(out, values[f]) end
end
return out
