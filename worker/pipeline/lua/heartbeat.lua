-- KEYS[1]=inflight_ss (of the user's shard)  ARGV[1]=member (u:t) ARGV[2]=inflight_ms
-- Push a running reflection's in-flight deadline to the server's now + inflight_ms (only if the
-- thread is still in flight: XX). One round trip, the server's clock. Returns 1 if updated.
local t = redis.call('TIME')  -- the server's clock: every process agrees on deadlines
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
