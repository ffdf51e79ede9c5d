-- Plain feed retract.
-- KEYS: config, ids (zset), items
-- ARGV: feed, id
local e = fbneed(KEYS[1], 'feed'); if e then return e end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return redis.error_reply('FBNOITEM') end
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('PUBLISH', 'feed.retract:' .. ARGV[1], ARGV[2])
return 1
