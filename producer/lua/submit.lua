-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=msgids KEYS[4]=due_ss KEYS[5]=dlq KEYS[6]=stats
-- KEYS[7]=user_threads (the user's thread-id index)
-- ARGV[1]=after_ms ARGV[2]=max_wait_ms ARGV[3]=member ARGV[4]=profile ARGV[5]=msgid_ttl_s
-- ARGV[6]=thread_id ARGV[7]=index_ttl_s ARGV[8..]=pairs of (message id or '', turn JSON)
-- Returns {accepted, duplicates, generation, due_ms or -1}, or {-1, 0, 0, -1} if `reverie reshard`
-- closed this shard (its stats hash has a 'closed' field): nothing written, the producer reads the
-- layout record again and resends.
if redis.call('HEXISTS', KEYS[6], 'closed') == 1 then return {-1, 0, 0, -1} end
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local accepted, dups = 0, 0
for i = 8, #ARGV, 2 do
  local mid = ARGV[i]
  if mid == '' or redis.call('SADD', KEYS[3], mid) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    accepted = accepted + 1
  else
    dups = dups + 1
  end
end
redis.call('EXPIRE', KEYS[3], ARGV[5])  -- a no-op when no id was given (no set)
if accepted == 0 then
  redis.call('HINCRBY', KEYS[6], 'duplicate_turns', dups)
  local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
  local due = redis.call('ZSCORE', KEYS[4], ARGV[3])
  return {0, dups, gen, due and math.floor(tonumber(due)) or -1}
end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('PERSIST', KEYS[1])
local first = tonumber(redis.call('HGET', KEYS[1], 'first_ms') or '0')
if first == 0 then first = now end
local due = now + tonumber(ARGV[1])
local cap = first + tonumber(ARGV[2])
if cap < due then due = cap end
redis.call('HSET', KEYS[1], 'first_ms', first, 'last_ms', now, 'profile', ARGV[4], 'max_wait_ms', ARGV[2])
if redis.call('HEXISTS', KEYS[5], ARGV[3]) == 0 then
  redis.call('ZADD', KEYS[4], due, ARGV[3])
else
  due = -1
end
redis.call('SADD', KEYS[7], ARGV[6])
redis.call('EXPIRE', KEYS[7], ARGV[7])
redis.call('HINCRBY', KEYS[6], 'enqueued_turns', accepted)
if dups > 0 then redis.call('HINCRBY', KEYS[6], 'duplicate_turns', dups) end
return {accepted, dups, gen, due}
