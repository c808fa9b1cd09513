-- KEYS[1]=changed_ss  ARGV[1]=user_id ARGV[2]=score seen when consolidation started
-- Unmark a consolidated user unless it changed again meanwhile. Returns 1 if removed.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
