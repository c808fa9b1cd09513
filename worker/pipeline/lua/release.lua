-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=inflight_ss KEYS[4]=stats
-- ARGV[1]=token ARGV[2]=member ARGV[3]=generation ARGV[4]=stat name
-- End a reflection without committing (superseded, rolled back, nothing to do).
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[3]) then redis.call('ZREM', KEYS[3], ARGV[2]) end
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
return 1
