-- KEYS[1]=lease  ARGV[1]=token ARGV[2]=ttl_ms   Returns 1 if still ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
