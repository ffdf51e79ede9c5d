-- Reads of a job feed, with the type check in the same round trip.
-- KEYS: config, ids (list), items, claimed (zset), stalled (set)
-- ARGV: op, then per op:
--   'item', id    -> the job's payload (FBNOITEM when missing)
--   'available'   -> ids waiting, next first
--   'inflight'    -> ids claimed, oldest claim first
--   'stalled'     -> ids stalled
--   'policy'      -> {job_timeout_ms or false, job_max_retries or false}
local e = fbneed(KEYS[1], 'job'); if e then return e end
local op = ARGV[1]
if op == 'item' then
  local item = redis.call('HGET', KEYS[3], ARGV[2])
  if not item then return redis.error_reply('FBNOITEM') end
  return item
elseif op == 'available' then
  local ids = redis.call('LRANGE', KEYS[2], 0, -1)
  local out = {}
  for i = #ids, 1, -1 do out[#out + 1] = ids[i] end
  return out
elseif op == 'inflight' then
  return redis.call('ZRANGE', KEYS[4], 0, -1)
elseif op == 'stalled' then
  return redis.call('SMEMBERS', KEYS[5])
elseif op == 'policy' then
  return redis.call('HMGET', KEYS[1], 'job_timeout_ms', 'job_max_retries')
end
return redis.error_reply('unknown op ' .. op)
