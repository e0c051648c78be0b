-- Holds an instance id for one process. KEYS[1]: the id's presence key. ARGV: this process's
-- value, its expiry in ms. Taken when free and renewed when ours: returns {1, '', 0}; held by
-- another process: returns {0, its value, its remaining ms}, and leaves it.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  return {0, held, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, '', 0}
