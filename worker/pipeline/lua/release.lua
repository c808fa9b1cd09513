-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=stats KEYS[5]=due_ss KEYS[6]=waiters
-- ARGV[1]=token ARGV[2]=member ARGV[3]=generation ARGV[4]=stat name (the outcome)
-- ARGV[5]=turns read ARGV[6]=extractor name ('' if none ran)
-- End a reflection without committing (superseded, rolled back, nothing to do); hand the lease
-- over to one thread of this user that waited for it (due now). Records the outcome in the
-- thread hash's last_* fields, unless the hash is gone (forgotten), holds a later generation's,
-- or holds this generation's commit (a joint reflection of a sibling committed it; its own task
-- then finds nothing to do).
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  -- Wake one waiter (due now); the others wait for the next release, or for the due time the
  -- lease's TTL gave them (so a woken waiter whose task dies strands no one).
  local w = redis.call('SPOP', KEYS[6])
  while w do
    if redis.call('ZSCORE', KEYS[5], w) then redis.call('ZADD', KEYS[5], 'LT', now, w); break end
    w = redis.call('SPOP', KEYS[6])
  end
end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_gen') or '0')
if (last < tonumber(ARGV[3]) or (last == tonumber(ARGV[3])
      and redis.call('HGET', KEYS[1], 'last_outcome') ~= 'committed'))
    and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_gen', ARGV[3], 'last_outcome', ARGV[4], 'last_end_ms', now,
    'last_turns', ARGV[5] or 0, 'last_ins', 0, 'last_upd', 0, 'last_del', 0, 'last_extractor', ARGV[6] or '',
    'last_error', '')
end
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
return 1
