-- Sorted feed append / prepend / publish before or after an item.
-- KEYS: config, ids (list), items, idincr, publishes
-- ARGV: feed, mode ('end' | 'begin' | 'before' | 'after'), rel, item
local e = fbneed(KEYS[1], 'sorted_feed'); if e then return e end
local feed, mode, rel, item = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if (mode == 'before' or mode == 'after') and redis.call('HEXISTS', KEYS[3], rel) == 0 then
  return redis.error_reply('FBNOREL')
end
local id = tostring(redis.call('INCR', KEYS[4]))
local pos = fbplace(KEYS[2], id, mode, rel)
redis.call('HSET', KEYS[3], id, item)
redis.call('INCR', KEYS[5])
redis.call('PUBLISH', 'feed.publish:' .. feed, id .. '\0' .. item)
redis.call('PUBLISH', 'feed.position:' .. feed, id .. '\0' .. pos)
return id
