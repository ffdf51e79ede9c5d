-- Job stall: takes a claimed job (or, with ARGV[2] == 'available', a job
-- waiting in the available list or for its retry) out of circulation. The
-- status record keeps the failure count and the reason.
-- KEYS: job keys (fbjob)
-- ARGV: id, from ('claimed' | 'available'), reason ('' = none)
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local id = ARGV[1]
if ARGV[2] == 'available' then
  if redis.call('LREM', Q.ids, 0, id) == 0 and redis.call('ZREM', Q.delayed, id) == 0 then
    return fberr('FBNOTCLAIMED')
  end
elseif redis.call('ZREM', Q.claimed, id) == 0 then
  return fberr('FBNOTCLAIMED')
end
local n = redis.call('HGET', Q.cancelled, id)
if redis.call('EXISTS', Q.record) == 1 then
  if n then redis.call('HSET', Q.record, 'failures', n) end
  if ARGV[3] ~= '' then redis.call('HSET', Q.record, 'last_error', ARGV[3]) end
  redis.call('HSET', Q.record, 'stalled_at', fbnow())
end
redis.call('HDEL', Q.cancelled, id)
redis.call('SADD', Q.stalled, id)
redis.call('ZREM', Q.published, id)
return 1
