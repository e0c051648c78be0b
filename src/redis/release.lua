-- Gives up a claim whose event could not be stored, if it is still ours. KEYS[1]: the claim.
-- ARGV[1]: this process's pending value (or its presence value, when it stops).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
