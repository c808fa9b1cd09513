-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=due_ss KEYS[5]=dlq KEYS[6]=stats
-- ARGV[1]=token ('' if none) ARGV[2]=member ARGV[3]=generation ARGV[4]=delay_ms
-- ARGV[5]=count_failure (0|1) ARGV[6]=max_attempts ARGV[7]=dead letter JSON
-- Put the thread back in the due set (lease busy, or a failure with backoff); after
-- max_attempts failures move it to the dead-letter hash instead. Turns stay buffered.
-- Returns {attempts, dead_lettered 0|1}.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if ARGV[5] == '1' then
  attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HINCRBY', KEYS[6], 'failed', 1)
  if attempts >= tonumber(ARGV[6]) then
    redis.call('ZREM', KEYS[4], ARGV[2])
    redis.call('HSET', KEYS[5], ARGV[2], ARGV[7])
    redis.call('HINCRBY', KEYS[6], 'dead_lettered', 1)
    return {attempts, 1}
  end
else
  redis.call('HINCRBY', KEYS[6], 'deferred', 1)
end
redis.call('ZADD', KEYS[4], 'NX', now + tonumber(ARGV[4]), ARGV[2])
return {attempts, 0}
