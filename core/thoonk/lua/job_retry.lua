-- Job retry of a stalled job.
-- KEYS: config, stalled, ids (list), published
-- ARGV: id
local e = fbneed(KEYS[1], 'job'); if e then return e end
if redis.call('SREM', KEYS[2], ARGV[1]) == 0 then return redis.error_reply('FBNOTSTALLED') end
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], fbnow(), ARGV[1])
return 1
