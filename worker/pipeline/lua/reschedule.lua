-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=due_ss KEYS[5]=dlq KEYS[6]=stats
-- KEYS[7]=waiters (of the user)
-- ARGV[1]=token ('' if none) ARGV[2]=member ARGV[3]=generation ARGV[4]=delay_ms
-- ARGV[5]=count_failure (0|1) ARGV[6]=max_attempts ARGV[7]=dead letter JSON
-- ARGV[8]=wait_for_lease (0|1) ARGV[9]=error class ARGV[10]=extractor name (for a counted failure)
-- Put the thread back in the due set after delay_ms (a failure with backoff, a send that
-- failed); after max_attempts failures move it to the dead-letter hash instead. Turns stay
-- buffered. With wait_for_lease (another reflection of the user holds the lease) the thread
-- waits until that lease ends (delay_ms is jitter on top): it joins the user's waiters, whom a
-- release makes due at once, and the lease's TTL bounds the wait if the holder died. No polling.
-- A deferred task older than the thread's last dispatch ends there (the newer task reflects it).
-- A counted failure is recorded as the thread's last reflection (last_* fields: failed or
-- dead_lettered), unless the hash holds a later generation's record.
-- Returns {attempts, dead_lettered 0|1}.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  -- Wake one waiter (due now); the others wait for the next release, or for the due time the
  -- lease's TTL gave them (so a woken waiter whose task dies strands no one).
  local w = redis.call('SPOP', KEYS[7])
  while w do
    if redis.call('ZSCORE', KEYS[4], w) then redis.call('ZADD', KEYS[4], 'LT', now, w); break end
    w = redis.call('SPOP', KEYS[7])
  end
end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local delay = tonumber(ARGV[4])
if ARGV[5] == '1' then
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HINCRBY', KEYS[6], 'failed', 1)
  local dead = attempts >= tonumber(ARGV[6])
  if tonumber(redis.call('HGET', KEYS[1], 'last_gen') or '0') <= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'last_gen', ARGV[3], 'last_outcome', dead and 'dead_lettered' or 'failed',
      'last_end_ms', now, 'last_turns', 0, 'last_ins', 0, 'last_upd', 0, 'last_del', 0,
      'last_extractor', ARGV[10] or '', 'last_error', ARGV[9] or '')
  end
  if dead then
    redis.call('ZREM', KEYS[4], ARGV[2])
    redis.call('HSET', KEYS[5], ARGV[2], ARGV[7])
    redis.call('HINCRBY', KEYS[6], 'dead_lettered', 1)
    return {attempts, 1}
  end
elseif ARGV[8] == '1' then
  redis.call('HINCRBY', KEYS[6], 'deferred', 1)
  -- A newer generation's task was dispatched: it covers this thread; waiting too would only
  -- send an extra task that finds nothing to do.
  if d > tonumber(ARGV[3]) then return {attempts, 0} end
  local pttl = redis.call('PTTL', KEYS[2])
  if pttl > 0 then  -- still held: wait for the hand-over, or for the TTL of a dead holder
    redis.call('SADD', KEYS[7], ARGV[2])
    redis.call('PEXPIRE', KEYS[7], pttl + 60000)
    delay = pttl + delay
  else  -- released meanwhile: no one would wake us, go now
    delay = 0
  end
else
  redis.call('HINCRBY', KEYS[6], 'deferred', 1)
end
redis.call('ZADD', KEYS[4], 'NX', now + delay, ARGV[2])
return {attempts, 0}
