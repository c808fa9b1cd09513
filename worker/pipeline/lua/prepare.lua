-- KEYS[1]=lease, then per thread: thread hash, journal (the reflected thread first, then the
-- sibling threads a joint reflection took in)
-- ARGV[1]=token ARGV[2]=policy ('rollback'|'finish'), then per thread: generation, commit plan JSON
-- The commit point: once the plans are journaled, the reflection's writes will happen (replayed
-- after a crash if needed). All or nothing: every thread's plan is journaled, or none. Under the
-- rollback policy a newer turn supersedes the reflection, unless the thread has waited past its
-- max_wait: then what was read is committed anyway (as the finish policy does) and the newer
-- turns stay buffered, so a thread that never goes quiet still gets memories. Returns 'ok',
-- 'overdue' (committed past max_wait), 'lost_lease', 'superseded' (a newer turn in the reflected
-- thread), 'sibling_superseded' (only in a sibling) or 'forgotten'.
local t = redis.call('TIME')  -- the server's clock: every process agrees on due times
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost_lease' end
local status = 'ok'
for i = 2, #KEYS, 2 do
  local gen = redis.call('HGET', KEYS[i], 'gen')
  if not gen then return 'forgotten' end
  if ARGV[2] == 'rollback' and gen ~= ARGV[i + 1] then
    local first = tonumber(redis.call('HGET', KEYS[i], 'first_ms') or '0')
    local max_wait = tonumber(redis.call('HGET', KEYS[i], 'max_wait_ms') or '0')
    if first == 0 or max_wait == 0 or now < first + max_wait then
      return i == 2 and 'superseded' or 'sibling_superseded'
    end
    status = 'overdue'
  end
end
for i = 2, #KEYS, 2 do redis.call('SET', KEYS[i + 1], ARGV[i + 2]) end
return status
