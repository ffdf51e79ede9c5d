-- Job stall: takes a claimed job (or, with ARGV[2] == 'available', a job
-- waiting in the available list) out of circulation.
-- KEYS: config, claimed, cancelled, stalled, published, ids (list)
-- ARGV: id, from ('claimed' | 'available')
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
if ARGV[2] == 'available' then
  if redis.call('LREM', KEYS[6], 0, id) == 0 then return redis.error_reply('FBNOTCLAIMED') end
elseif redis.call('ZREM', KEYS[2], id) == 0 then
  return redis.error_reply('FBNOTCLAIMED')
end
redis.call('HDEL', KEYS[3], id)
redis.call('SADD', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
return 1
