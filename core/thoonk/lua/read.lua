-- Reads of plain and sorted feeds (and counts of every type), with the
-- type check in the same round trip.
-- KEYS: config, ids, items
-- ARGV: op, then per op:
--   'ids'                      -> ids in display order (plain: oldest first)
--   'get', id, ...             -> items (false where missing)
--   'all'                      -> {id, item, ...}
--   'count'                    -> number of items
--   'item', id                 -> {item, score ('' on sorted feeds), index in display order}
--   'type'                     -> the type
local t = fbtype(KEYS[1])
if not t then return redis.error_reply('FBNOFEED') end
local op = ARGV[1]
if op == 'type' then return t end
if op == 'count' then
  if t == 'feed' then return redis.call('ZCARD', KEYS[2]) end
  return redis.call('HLEN', KEYS[3])
end
if t ~= 'feed' and t ~= 'sorted_feed' then return redis.error_reply('FBTYPE ' .. t) end
if op == 'ids' then
  if t == 'feed' then return redis.call('ZRANGE', KEYS[2], 0, -1) end
  return redis.call('LRANGE', KEYS[2], 0, -1)
elseif op == 'get' then
  return redis.call('HMGET', KEYS[3], unpack(ARGV, 2))
elseif op == 'all' then
  return redis.call('HGETALL', KEYS[3])
elseif op == 'item' then
  local item = redis.call('HGET', KEYS[3], ARGV[2])
  if not item then return redis.error_reply('FBNOITEM') end
  if t == 'feed' then
    return {item, redis.call('ZSCORE', KEYS[2], ARGV[2]) or '', redis.call('ZREVRANK', KEYS[2], ARGV[2]) or -1}
  end
  return {item, '', redis.call('LPOS', KEYS[2], ARGV[2]) or -1}
end
return redis.error_reply('unknown op ' .. op)
