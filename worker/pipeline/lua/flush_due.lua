-- KEYS[1]=due_ss KEYS[2]=stats  ARGV[1]=limit ARGV[2]=user_id ('' for every user)
-- Make pending threads due now regardless of debounce (batch "flush"). Returns how many moved.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pending = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))
local moved = 0
for _, m in ipairs(pending) do
  if ARGV[2] == '' or string.sub(m, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then
    redis.call('ZADD', KEYS[1], 'XX', now, m)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('HINCRBY', KEYS[2], 'flushed', moved) end
return moved
