-- KEYS[1]=user_threads (the user's thread-id index)
-- ARGV[1]=buffer key prefix of this user ('<p>:buf:<user>:') ARGV[2]=user turns per thread
-- ARGV[3]=turns scanned per thread (newest) ARGV[4]=threads at most
-- Read only. Returns {thread_id, turn JSON, ...}: each thread's newest user-role turns still
-- buffered (not yet reflected), newest first. The buffer keys are named by the index read here,
-- so they cannot be declared in KEYS beforehand: this script reads keys it builds from ARGV[1]
-- (all of one user, under one prefix). That is the one exception to "every key through KEYS",
-- taken so that recall costs one round trip; like the other multi-key scripts it assumes one
-- Redis, not a cluster.
local threads = redis.call('SMEMBERS', KEYS[1])
table.sort(threads)
local per_thread, scan, max_threads = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for n, thread in ipairs(threads) do
  if n > max_threads then break end
  local turns = redis.call('LRANGE', ARGV[1] .. thread, -scan, -1)
  local kept = 0
  for i = #turns, 1, -1 do
    if kept >= per_thread then break end
    local ok, turn = pcall(cjson.decode, turns[i])
    if ok and type(turn) == 'table' and turn['role'] == 'user' then
      table.insert(out, thread)
      table.insert(out, turns[i])
      kept = kept + 1
    end
  end
end
return out
