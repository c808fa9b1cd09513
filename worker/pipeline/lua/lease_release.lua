-- KEYS[1]=lease KEYS[2]=due_ss KEYS[3]=waiters (of the user)  ARGV[1]=token
-- Free the lease if still ours, and hand it over: threads that waited for it are due now.
-- Returns 1 if released.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do redis.call('ZADD', KEYS[2], 'XX', 'LT', now, m) end
redis.call('DEL', KEYS[3])
return 1
