-- Job retract: removes the job from every job key, and the bridge's status
-- record (a retracted job did not finish).
-- KEYS: config, items, ids (list), published, claimed, stalled, cancelled, record
-- ARGV: id
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
if redis.call('HDEL', KEYS[2], id) == 0 then return redis.error_reply('FBNOITEM') end
redis.call('LREM', KEYS[3], 0, id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('SREM', KEYS[6], id)
redis.call('HDEL', KEYS[7], id)
redis.call('DEL', KEYS[8])
return 1
