-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=journal  ARGV[1]=max_turns
-- Returns {generation, profile, journal or '', turn JSON...}
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
local profile = redis.call('HGET', KEYS[1], 'profile') or 'default'
local journal = redis.call('GET', KEYS[3]) or ''
local turns = redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
table.insert(turns, 1, journal)
table.insert(turns, 1, profile)
table.insert(turns, 1, gen)
return turns
