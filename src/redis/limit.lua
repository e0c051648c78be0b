-- One request from one client against the sliding window, atomically: at most ARGV[2] requests
-- let in during any ARGV[3] ms. KEYS[1] is the client's sorted set of acceptances (score: ms
-- since the epoch). ARGV: now_ms, limit, window_ms, a member unique to this request.
-- Returns {allowed (1 or 0), acceptances still counting before this one, the oldest's score
-- (-1 when allowed: only a refusal needs it)}. Safe to run twice (the client sends a call again
-- when its connection broke, not knowing whether Redis ran it): a request the first run let in
-- is counted once and let in again.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
-- An acceptance exactly `window` old no longer counts.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local live = redis.call('ZCARD', KEYS[1])
if live < limit then
  -- 0 added: this request's member was there already, counted in `live`.
  local added = redis.call('ZADD', KEYS[1], now, ARGV[4])
  -- Every acceptance in the set is at most `now`, so none counts once this expiry passes.
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, live - 1 + added, -1}
end
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
  return {1, live - 1, -1}
end
-- Refused: when the oldest acceptance stops counting says when to retry.
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, live, tonumber(first[2])}
