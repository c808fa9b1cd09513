-- KEYS[1]=history (of the user) KEYS[2]=changed_ss KEYS[3]=events (stream)
-- KEYS[4]=changes (the user's change journals, a hash)
-- ARGV[1]=user_id ARGV[2]=history_ttl_s ARGV[3]=history_max ARGV[4]=mark_changed (0|1)
-- ARGV[5]=events_max_len (0: none) ARGV[6]=events JSON (list of flat field/value lists)
-- ARGV[7]=change id ('' for none: nothing journaled) ARGV[8..]=history entry JSON
-- Memory writes outside a reflection (agent tools, consolidation), after their Qdrant write:
-- delete the change's journal entry and, in the same step, append its history and its change
-- events (XADD MAXLEN ~, server time as ts_ms) and, unless it comes from consolidation itself,
-- mark the user changed. A change whose journal entry is gone was recorded already (a replay
-- after a crash, or a second replayer): nothing is written, so no entry or event twice.
-- Returns entries appended, or -1 when the journal entry was gone.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[7] ~= '' and redis.call('HDEL', KEYS[4], ARGV[7]) == 0 then return -1 end
for i = 8, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if #ARGV >= 8 then
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
local max_len = tonumber(ARGV[5])
if max_len > 0 then
  local ts = string.format('%d', now)
  for _, f in ipairs(cjson.decode(ARGV[6])) do
    table.insert(f, 'ts_ms')
    table.insert(f, ts)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', max_len, '*', unpack(f))
  end
end
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
return #ARGV - 7
