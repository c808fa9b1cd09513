-- KEYS[1]=thread KEYS[2]=buffer KEYS[3]=lease KEYS[4]=journal KEYS[5]=inflight_ss KEYS[6]=stats
-- KEYS[7]=history (of the user) KEYS[8]=changed_ss KEYS[9]=due_ss KEYS[10]=waiters (of the user)
-- KEYS[11]=events (stream)
-- ARGV[1]=token ARGV[2]=turn_count ARGV[3]=member ARGV[4]=generation ARGV[5]=idle_ttl_s
-- ARGV[6]=user_id ARGV[7]=history_ttl_s ARGV[8]=history_max ARGV[9]=inserted ARGV[10]=updated
-- ARGV[11]=deleted ARGV[12]=extractor name ARGV[13]=events_max_len (0: none)
-- ARGV[14]=events JSON (list of flat field/value lists) ARGV[15]=keep_lease (1: a sibling of a
-- joint reflection, whose reflected thread finalizes last and frees the lease) ARGV[16..]=history
-- entry JSON
-- After the plan reached Qdrant: trim exactly the consumed turns, drop the journal, free the lease;
-- in the same step append the history entries and the change events (XADD MAXLEN ~, with the
-- server time as ts_ms) and mark the user changed (once per commit). The journal is deleted
-- here, so a second call for it finds none and writes no event twice. Also
-- hand the lease over to one thread of this user that waited for it (due now), and record the
-- last reflection (last_* fields of the thread hash; a later generation's record is kept).
-- A thread left with no turns leaves the due set and the waiters (a task for it would find nothing).
-- Returns 'ok', 'lost_lease' or 'no_journal'.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 'lost_lease' end
if redis.call('EXISTS', KEYS[4]) == 0 then return 'no_journal' end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
redis.call('DEL', KEYS[4])
if #ARGV >= 16 then
  for i = 16, #ARGV do redis.call('RPUSH', KEYS[7], ARGV[i]) end
  redis.call('LTRIM', KEYS[7], -tonumber(ARGV[8]), -1)
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[7]))
  redis.call('ZADD', KEYS[8], now, ARGV[6])
end
local max_len = tonumber(ARGV[13])
if max_len > 0 then
  local ts = string.format('%d', now)
  for _, f in ipairs(cjson.decode(ARGV[14])) do
    table.insert(f, 'ts_ms')
    table.insert(f, ts)
    redis.call('XADD', KEYS[11], 'MAXLEN', '~', max_len, '*', unpack(f))
  end
end
redis.call('HSET', KEYS[1], 'committed_gen', ARGV[4], 'attempts', 0)
if tonumber(redis.call('HGET', KEYS[1], 'last_gen') or '0') <= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'last_gen', ARGV[4], 'last_outcome', 'committed', 'last_end_ms', now,
    'last_turns', ARGV[2], 'last_ins', ARGV[9], 'last_upd', ARGV[10], 'last_del', ARGV[11],
    'last_extractor', ARGV[12], 'last_error', '')
end
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('HDEL', KEYS[1], 'first_ms')
  redis.call('ZREM', KEYS[9], ARGV[3])
  redis.call('SREM', KEYS[10], ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
else  -- turns that arrived during the reflection: their max_wait counts from the snapshot
  redis.call('HSET', KEYS[1], 'first_ms', redis.call('HGET', KEYS[1], 'snap_ms') or now)
end
local d = tonumber(redis.call('HGET', KEYS[1], 'dispatched_gen') or '0')
if d <= tonumber(ARGV[4]) then redis.call('ZREM', KEYS[5], ARGV[3]) end
if ARGV[15] ~= '1' then
  redis.call('DEL', KEYS[3])
  -- Wake one waiter (due now); the others wait for the next release, or for the due time the
  -- lease's TTL gave them (so a woken waiter whose task dies strands no one).
  local w = redis.call('SPOP', KEYS[10])
  while w do
    if redis.call('ZSCORE', KEYS[9], w) then redis.call('ZADD', KEYS[9], 'LT', now, w); break end
    w = redis.call('SPOP', KEYS[10])
  end
end
redis.call('HINCRBY', KEYS[6], 'committed', 1)
redis.call('HINCRBY', KEYS[6], 'reflected_turns', tonumber(ARGV[2]))
return 'ok'
