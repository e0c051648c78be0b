-- Marks a claim committed once the event is on this instance's disk. KEYS[1]: the claim.
-- ARGV: this process's pending value, the committed value, its expiry in ms (0: none).
-- The claim is replaced only if it is still ours, or gone (it expired, or Redis restarted
-- empty): a claim another instance took meanwhile is left to that instance.
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
