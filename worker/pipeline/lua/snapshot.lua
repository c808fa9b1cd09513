-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=journal KEYS[4]=changes KEYS[5]=thread index (of the user)
-- ARGV[1]=max_turns
-- Returns {generation, profile, journal or '', changes (1 if the user has journaled tool or
-- consolidation changes, else 0), threads in the user's index (a joint reflection looks for
-- siblings only when there are others), turn JSON...}. Records when the snapshot was taken
-- (snap_ms): turns left after the commit arrived later, so their max_wait counts from there.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
local profile = redis.call('HGET', KEYS[1], 'profile') or 'default'
local journal = redis.call('GET', KEYS[3]) or ''
local turns = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
if gen ~= '0' then redis.call('HSET', KEYS[1], 'snap_ms', now) end
table.insert(turns, 1, redis.call('SCARD', KEYS[5]))
table.insert(turns, 1, redis.call('EXISTS', KEYS[4]))
table.insert(turns, 1, journal)
table.insert(turns, 1, profile)
table.insert(turns, 1, gen)
return turns
