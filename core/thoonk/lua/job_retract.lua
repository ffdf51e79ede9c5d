-- Job retract: removes the job from every job key, and the bridge's status
-- record (a retracted job did not finish).
-- KEYS: job keys (fbjob)
-- ARGV: id
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local id = ARGV[1]
if redis.call('HDEL', Q.items, id) == 0 then return fberr('FBNOITEM') end
redis.call('LREM', Q.ids, 0, id)
redis.call('ZREM', Q.published, id)
redis.call('ZREM', Q.claimed, id)
redis.call('SREM', Q.stalled, id)
redis.call('HDEL', Q.cancelled, id)
redis.call('ZREM', Q.delayed, id)
redis.call('DEL', Q.record)
return 1
