-- KEYS[1]=lease KEYS[2]=due_ss KEYS[3]=waiters (of the user)  ARGV[1]=token
-- Free the lease if still ours, and hand it over: one thread that waited for it is due now.
-- Returns 1 if released.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
-- Wake one waiter (due now); the others wait for the next release, or for the due time the
-- lease's TTL gave them (so a woken waiter whose task dies strands no one).
local w = redis.call('SPOP', KEYS[3])
while w do
  if redis.call('ZSCORE', KEYS[2], w) then redis.call('ZADD', KEYS[2], 'LT', now, w); break end
  w = redis.call('SPOP', KEYS[3])
end
return 1
