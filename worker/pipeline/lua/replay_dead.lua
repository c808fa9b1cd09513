-- KEYS[1]=dlq KEYS[2]=thread KEYS[3]=due_ss KEYS[4]=buffer  ARGV[1]=member
-- Returns 1 if the dead letter was replayed (made due now), 0 if there was none.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[4]) == 0 then return 1 end
redis.call('HSET', KEYS[2], 'attempts', 0)
redis.call('ZADD', KEYS[3], now, ARGV[1])
return 1
