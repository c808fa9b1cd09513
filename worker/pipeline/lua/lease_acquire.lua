-- KEYS[1]=lease KEYS[2]=fence  ARGV[1]=ttl_ms
-- Returns a fencing token (> 0), or minus the lease's remaining ms (< 0) when another reflection
-- of this user holds it: the caller waits that long at most (the holder hands over on release).
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then return -math.max(pttl, 1) end
local token = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
