-- Reads of a job feed, with the type check in the same round trip.
-- KEYS: job keys (fbjob; no record)
-- ARGV: op, then per op:
--   'item', id    -> the job's payload (FBNOITEM when missing)
--   'available'   -> ids waiting, next first
--   'inflight'    -> ids claimed, oldest claim first
--   'stalled'     -> ids stalled
--   'delayed'     -> ids waiting for a retry, soonest first
--   'policy'      -> {job_timeout_ms, job_max_retries, job_retry_backoff_ms,
--                     job_retry_backoff_max_ms}, false where unset
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local op = ARGV[1]
if op == 'item' then
  local item = redis.call('HGET', Q.items, ARGV[2])
  if not item then return fberr('FBNOITEM') end
  return item
elseif op == 'available' then
  local ids = redis.call('LRANGE', Q.ids, 0, -1)
  local out = {}
  for i = #ids, 1, -1 do out[#out + 1] = ids[i] end
  return out
elseif op == 'inflight' then
  return redis.call('ZRANGE', Q.claimed, 0, -1)
elseif op == 'stalled' then
  return redis.call('SMEMBERS', Q.stalled)
elseif op == 'delayed' then
  return redis.call('ZRANGE', Q.delayed, 0, -1)
elseif op == 'policy' then
  return redis.call('HMGET', Q.cfg, 'job_timeout_ms', 'job_max_retries', 'job_retry_backoff_ms', 'job_retry_backoff_max_ms')
end
return fberr('unknown op ' .. op)
