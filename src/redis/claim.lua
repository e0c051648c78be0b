-- Claims an event for this instance unless another holds it. KEYS[1]: the event's claim.
-- ARGV: the pending value (this instance, this process and a token), its expiry in ms.
-- Returns {1, '', 0} when claimed, else {0, the claim's value, its remaining ms}.
local held = redis.call('GET', KEYS[1])
if held then
  return {0, held, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, '', 0}
