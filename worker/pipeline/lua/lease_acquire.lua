-- KEYS[1]=lease KEYS[2]=fence  ARGV[1]=ttl_ms
-- Returns a fencing token (> 0), or 0 when another reflection of this user holds the lease.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local token = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
