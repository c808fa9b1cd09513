-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=journal  ARGV[1]=token ARGV[2]=generation
-- ARGV[3]=policy ('rollback'|'finish') ARGV[4]=commit plan JSON
-- The commit point: once the plan is journaled, the reflection's writes will happen (replayed
-- after a crash if needed). Under the rollback policy a newer turn supersedes the reflection,
-- unless the thread has waited past its max_wait: then what was read is committed anyway (as
-- the finish policy does) and the newer turns stay buffered, so a thread that never goes quiet
-- still gets memories. Returns 'ok', 'overdue' (committed past max_wait), 'lost_lease',
-- 'superseded' or 'forgotten'.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost_lease' end
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return 'forgotten' end
local status = 'ok'
if ARGV[3] == 'rollback' and gen ~= ARGV[2] then
  local first = tonumber(redis.call('HGET', KEYS[1], 'first_ms') or '0')
  local max_wait = tonumber(redis.call('HGET', KEYS[1], 'max_wait_ms') or '0')
  if first == 0 or max_wait == 0 or now < first + max_wait then return 'superseded' end
  status = 'overdue'
end
redis.call('SET', KEYS[3], ARGV[4])
return status
