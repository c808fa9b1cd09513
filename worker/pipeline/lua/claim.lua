-- KEYS[1]=due_ss KEYS[2]=inflight_ss KEYS[3]=stats (all of one shard)
-- KEYS[4..]=thread hash of each member, in the order of ARGV[2..]
-- ARGV[1]=inflight_ms ARGV[2..]=members (u:t) of that shard, from DUE_CANDIDATES
-- Atomically moves each member that is still due to in-flight (a batch: one call per shard per
-- dispatcher pass). Returns {generation, lag_ms} per member, flattened; generation 0 = not claimed
-- (no longer due, or its thread hash is gone). A shard closed by `reverie reshard` claims nothing.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
if redis.call('HEXISTS', KEYS[3], 'closed') == 1 then
  for _ = 2, #ARGV do table.insert(out, 0); table.insert(out, 0) end
  return out
end
local deadline = now + tonumber(ARGV[1])
local claimed = 0
for i = 2, #ARGV do
  local m, thread = ARGV[i], KEYS[i + 2]
  local s = redis.call('ZSCORE', KEYS[1], m)
  local gen = 0
  if s and tonumber(s) <= now then
    redis.call('ZREM', KEYS[1], m)
    gen = tonumber(redis.call('HGET', thread, 'gen') or '0')
  end
  if gen > 0 then
    redis.call('ZADD', KEYS[2], deadline, m)
    redis.call('HSET', thread, 'dispatched_gen', gen)
    claimed = claimed + 1
    table.insert(out, gen)
    table.insert(out, now - math.floor(tonumber(s)))
  else
    table.insert(out, 0)
    table.insert(out, 0)
  end
end
if claimed > 0 then redis.call('HINCRBY', KEYS[3], 'dispatched', claimed) end
return out
