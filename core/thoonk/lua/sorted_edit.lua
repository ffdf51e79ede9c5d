-- Sorted feed edit of an existing item.
-- KEYS: config, items, publishes
-- ARGV: feed, id, item
local e = fbneed(KEYS[1], 'sorted_feed'); if e then return e end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return redis.error_reply('FBNOITEM') end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', 'feed.publish:' .. ARGV[1], ARGV[2] .. '\0' .. ARGV[3])
return 1
