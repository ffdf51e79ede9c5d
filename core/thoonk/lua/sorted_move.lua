-- Sorted feed move of an item to a new position.
-- KEYS: config, ids (list), items
-- ARGV: feed, id, mode ('end' | 'begin' | 'before' | 'after'), rel
local e = fbneed(KEYS[1], 'sorted_feed'); if e then return e end
local feed, id, mode, rel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', KEYS[3], id) == 0 then return redis.error_reply('FBNOITEM') end
if mode == 'before' or mode == 'after' then
  if rel == id or redis.call('HEXISTS', KEYS[3], rel) == 0 then return redis.error_reply('FBNOREL') end
end
redis.call('LREM', KEYS[2], 1, id)
local pos = fbplace(KEYS[2], id, mode, rel)
redis.call('PUBLISH', 'feed.position:' .. feed, id .. '\0' .. pos)
return 1
