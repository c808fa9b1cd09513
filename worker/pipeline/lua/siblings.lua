-- KEYS[1]=due_ss KEYS[2]=dlq (of the user's shard), then per candidate thread of the same user:
-- thread hash, buffer, journal
-- ARGV[1]=turn budget ARGV[2]=profile of the reflected thread ARGV[3]=most siblings to take,
-- then per candidate: member (u:t)
-- Snapshot the user's other threads that a joint reflection may take in, under the user's lease:
-- those whose quiet period is over (their generation was dispatched and no turn came since, or
-- they are due now), with the same profile, no failure or dead letter pending, no journal to
-- replay, and turns that fit the budget (whole buffers only). Records snap_ms as SNAPSHOT does.
-- Returns, per sibling taken: {candidate index (1-based), generation, turn count, turn JSON...}.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local budget, most, out, taken = tonumber(ARGV[1]), tonumber(ARGV[3]), {}, 0
for j = 4, #ARGV do
  if taken >= most then break end
  local k = 3 + (j - 4) * 3
  local thread, buffer, journal, m = KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[j]
  local h = redis.call('HMGET', thread, 'gen', 'profile', 'attempts', 'dispatched_gen')
  local gen = h[1]
  local n = redis.call('LLEN', buffer)
  if gen and gen ~= '0' and (h[2] or 'default') == ARGV[2] and tonumber(h[3] or '0') == 0
      and n > 0 and n <= budget and redis.call('EXISTS', journal) == 0
      and redis.call('HEXISTS', KEYS[2], m) == 0 then
    local due = redis.call('ZSCORE', KEYS[1], m)
    if h[4] == gen or (due and tonumber(due) <= now) then
      redis.call('HSET', thread, 'snap_ms', now)
      table.insert(out, j - 3)
      table.insert(out, gen)
      table.insert(out, n)
      for _, turn in ipairs(redis.call('LRANGE', buffer, 0, n - 1)) do table.insert(out, turn) end
      budget = budget - n
      taken = taken + 1
    end
  end
end
return out
