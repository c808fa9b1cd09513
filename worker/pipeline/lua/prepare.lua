-- KEYS[1]=thread KEYS[2]=lease KEYS[3]=journal  ARGV[1]=token ARGV[2]=generation
-- ARGV[3]=policy ('rollback'|'finish') ARGV[4]=commit plan JSON
-- The commit point: once the plan is journaled, the reflection's writes will happen (replayed
-- after a crash if needed). Returns 'ok', 'lost_lease', 'superseded' or 'forgotten'.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost_lease' end
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then return 'forgotten' end
if ARGV[3] == 'rollback' and gen ~= ARGV[2] then return 'superseded' end
redis.call('SET', KEYS[3], ARGV[4])
return 'ok'
