-- Trims a feed's journal by age: entries older than the cutoff go, and the
-- journal remembers the last one gone.
-- KEYS: journal, journal meta
-- ARGV: cutoff ms
-- Replies the number of entries removed.
local older = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '-', 'COUNT', 1)
if not older[1] then return 0 end
local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
redis.call('HSET', KEYS[2], 'floor', older[1][1])
return n
