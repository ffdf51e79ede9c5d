-- Plain feed publish (new id) or edit (existing id), with max_length trimming.
-- KEYS: config, ids (zset), items (hash), publishes (counter)
-- ARGV: feed, id, item, mode ('edit' = only when the id exists,
--       'create' = only when it does not)
local e = fbneed(KEYS[1], 'feed'); if e then return e end
local feed, id, item = ARGV[1], ARGV[2], ARGV[3]
if ARGV[4] == 'edit' and not redis.call('ZSCORE', KEYS[2], id) then
  return redis.error_reply('FBNOITEM')
end
if ARGV[4] == 'create' and redis.call('ZSCORE', KEYS[2], id) then
  return redis.error_reply('FBITEMEXISTS')
end
local max = tonumber(redis.call('HGET', KEYS[1], 'max_length') or '0') or 0
if max > 0 then
  local exists = redis.call('ZSCORE', KEYS[2], id)
  local excess = redis.call('ZCARD', KEYS[2]) + (exists and 0 or 1) - max
  if excess > 0 then
    -- the oldest ids, one spare in case the id being published is among them
    local old = redis.call('ZRANGE', KEYS[2], 0, excess)
    for _, rid in ipairs(old) do
      if excess <= 0 then break end
      if rid ~= id then
        redis.call('ZREM', KEYS[2], rid)
        redis.call('HDEL', KEYS[3], rid)
        redis.call('PUBLISH', 'feed.retract:' .. feed, rid)
        excess = excess - 1
      end
    end
  end
end
local added = redis.call('ZADD', KEYS[2], fbnow(), id)
redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], id, item)
if added == 1 then
  redis.call('PUBLISH', 'feed.publish:' .. feed, id .. '\0' .. item)
else
  redis.call('PUBLISH', 'feed.edit:' .. feed, id .. '\0' .. item)
end
return added
