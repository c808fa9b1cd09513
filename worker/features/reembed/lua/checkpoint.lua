-- KEYS[1]=lock KEYS[2]=state KEYS[3]=old  ARGV[1]=lock token ARGV[2]=state JSON ('' deletes it) ARGV[3]=collection to keep as old ('' none)
-- Write the re-embed's checkpoint only while this run holds the lock (a run that stalled past
-- the lock's TTL must not overwrite the checkpoint of the run that took over). Returns 1, or 0
-- if the lock is not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[3]) end
return 1
