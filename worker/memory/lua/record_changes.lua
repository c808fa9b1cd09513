-- KEYS[1]=history (of the user) KEYS[2]=changed_ss KEYS[3]=events (stream)
-- ARGV[1]=user_id ARGV[2]=history_ttl_s ARGV[3]=history_max ARGV[4]=mark_changed (0|1)
-- ARGV[5]=events_max_len (0: none) ARGV[6]=events JSON (list of flat field/value lists)
-- ARGV[7..]=history entry JSON
-- Memory writes outside a reflection (agent tools, consolidation): append their history and
-- their change events (XADD MAXLEN ~, server time as ts_ms) in one step and, unless they come
-- from consolidation itself, mark the user changed. Returns entries appended.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 7, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if #ARGV >= 7 then
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
return #ARGV - 6
