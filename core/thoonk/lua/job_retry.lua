-- Job retry of a stalled job.
-- KEYS: job keys (fbjob)
-- ARGV: id
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
if redis.call('SREM', Q.stalled, ARGV[1]) == 0 then return fberr('FBNOTSTALLED') end
redis.call('LPUSH', Q.ids, ARGV[1])
redis.call('ZADD', Q.published, fbnow(), ARGV[1])
if redis.call('EXISTS', Q.record) == 1 then redis.call('HDEL', Q.record, 'stalled_at') end
return 1
