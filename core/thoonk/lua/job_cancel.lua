-- Job cancel: the job runs again after a backoff delay, unless it has now
-- been cancelled more times than the feed's retry limit, in which case it
-- is stalled. The status record (when the job has one) keeps the failure
-- count and the last error, which a stall would otherwise lose.
-- KEYS: job keys (fbjob)
-- ARGV: id, maxretries (-1 = no limit), claimedbefore ('' = any claim time;
--       else only cancel when claimed at or before this time, in ms),
--       backoff base ms ('0' = none), backoff max ms, jitter in [0,1), error
-- Replies {cancel count, 'available' | 'delayed' | 'stalled', due ms}.
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local id = ARGV[1]
local score = redis.call('ZSCORE', Q.claimed, id)
if not score then return fberr('FBNOTCLAIMED') end
-- claim times below 1e11 were written in seconds by older Thoonk writers
local at = fbnorm(score)
if ARGV[3] ~= '' and at > tonumber(ARGV[3]) then return fberr('FBNOTCLAIMED') end
redis.call('ZREM', Q.claimed, id)
local n = redis.call('HINCRBY', Q.cancelled, id, 1)
if redis.call('EXISTS', Q.record) == 1 then
  redis.call('HSET', Q.record, 'failures', n, 'last_error', ARGV[7], 'failed_at', fbnow())
end
local max = tonumber(ARGV[2])
if max >= 0 and n > max then
  redis.call('HDEL', Q.cancelled, id)
  redis.call('SADD', Q.stalled, id)
  redis.call('ZREM', Q.published, id)
  return {n, 'stalled', 0}
end
local base, cap = tonumber(ARGV[4]) or 0, tonumber(ARGV[5]) or 0
if base > 0 then
  local d = base
  for _ = 2, n do
    if d >= cap then break end
    d = d * 2
  end
  d = math.min(d, cap)
  d = math.floor(d / 2 + d / 2 * (tonumber(ARGV[6]) or 0))
  local due = fbnow() + d
  redis.call('ZADD', Q.delayed, due, id)
  return {n, 'delayed', due}
end
redis.call('LPUSH', Q.ids, id)
return {n, 'available', 0}
