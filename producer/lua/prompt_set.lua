-- KEYS[1]=prompt KEYS[2]=prompt history  ARGV[1]=expected version ('' = any) ARGV[2]=record JSON
-- ARGV[3]=history_max
-- Store a new prompt version; the previous one goes to the history list. Compare-and-set on the
-- version so two optimizers cannot silently overwrite each other. Returns the new version or -1.
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return -1 end
local prev = redis.call('HGET', KEYS[1], 'json')
if prev then
  redis.call('RPUSH', KEYS[2], prev)
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
end
local v = cur + 1
redis.call('HSET', KEYS[1], 'version', v, 'json', ARGV[2])
return v
