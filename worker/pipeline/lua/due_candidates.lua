-- KEYS[1]=due_ss  ARGV[1]=limit
-- Returns {next_due_ms or -1, member...} for members due now (read only; CLAIM decides)
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nxt = -1
if #head > 0 then nxt = math.floor(tonumber(head[2])) - now end
table.insert(due, 1, nxt)
return due
