-- Sorted feed retract.
-- KEYS: config, ids (list), items
-- ARGV: feed, id
local e = fbneed(KEYS[1], 'sorted_feed'); if e then return e end
if redis.call('LREM', KEYS[2], 1, ARGV[2]) == 0 then return redis.error_reply('FBNOITEM') end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('PUBLISH', 'feed.retract:' .. ARGV[1], ARGV[2])
return 1
