-- KEYS[1]=due_ss KEYS[2]=inflight_ss KEYS[3]=thread KEYS[4]=stats
-- ARGV[1]=member ARGV[2]=inflight_ms
-- Atomically moves a due thread to in-flight. Returns {generation, lag_ms}; generation 0 = not claimed.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) > now then return {0, 0} end
redis.call('ZREM', KEYS[1], ARGV[1])
local gen = tonumber(redis.call('HGET', KEYS[3], 'gen') or '0')
if gen == 0 then return {0, 0} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[3], 'dispatched_gen', gen)
redis.call('HINCRBY', KEYS[4], 'dispatched', 1)
return {gen, now - math.floor(tonumber(s))}
