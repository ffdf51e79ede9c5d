-- Reads of plain and sorted feeds (and counts of every type), with the
-- type check in the same round trip.
-- KEYS: config, ids, items, revs (optional: the journal's revisions)
-- ARGV: op, then per op:
--   'ids'                      -> ids in display order (plain: oldest first)
--   'get', id, ...             -> items (false where missing)
--   'all'                      -> {id, item, ...}
--   'count'                    -> number of items
--   'item', id                 -> {item, score ('' on sorted feeds), index
--                                 in display order, revision or ''}
--   'itemof', id               -> {item, score ('' on sorted feeds), revision
--                                 or '', the type}: 'item' without the index
--   'type'                     -> the type
local t = fbtype(KEYS[1])
if not t then return fberr('FBNOFEED') end
local op = ARGV[1]
if op == 'type' then return t end
if op == 'count' then
  if t == 'feed' then return redis.call('ZCARD', KEYS[2]) end
  return redis.call('HLEN', KEYS[3])
end
if t ~= 'feed' and t ~= 'sorted_feed' then return fberr('FBTYPE ' .. t) end
if op == 'ids' then
  if t == 'feed' then
    if fbmixed(KEYS[2]) then
      local all = fbmerged(KEYS[2], redis.call('ZCARD', KEYS[2]))
      local out = {}
      for i = #all - 1, 1, -2 do out[#out + 1] = all[i] end
      return out
    end
    return redis.call('ZRANGE', KEYS[2], 0, -1)
  end
  return redis.call('LRANGE', KEYS[2], 0, -1)
elseif op == 'get' then
  return redis.call('HMGET', KEYS[3], unpack(ARGV, 2))
elseif op == 'all' then
  return redis.call('HGETALL', KEYS[3])
elseif op == 'item' then
  local item = redis.call('HGET', KEYS[3], ARGV[2])
  if not item then return fberr('FBNOITEM') end
  local rev = ''
  if KEYS[4] then rev = string.match(redis.call('HGET', KEYS[4], ARGV[2]) or '', '^(%S+)') or '' end
  if t == 'feed' then
    local sc = redis.call('ZSCORE', KEYS[2], ARGV[2])
    local idx = -1
    if sc then idx = fbrank(KEYS[2], ARGV[2], sc) end
    return {item, sc or '', idx, rev}
  end
  return {item, '', redis.call('LPOS', KEYS[2], ARGV[2]) or -1, rev}
elseif op == 'itemof' then
  local item = redis.call('HGET', KEYS[3], ARGV[2])
  if not item then return fberr('FBNOITEM') end
  local rev = string.match(redis.call('HGET', KEYS[4], ARGV[2]) or '', '^(%S+)') or ''
  local sc = ''
  if t == 'feed' then sc = redis.call('ZSCORE', KEYS[2], ARGV[2]) or '' end
  return {item, sc, rev, t}
end
return fberr('unknown op ' .. op)
