-- Job put. An id already in the job feed, or (for a job with a status
-- record) whose record is still kept after it finished, is refused with
-- FBEXISTS and the record's fingerprint: a put repeated with the same id
-- is done once.
-- KEYS: job keys (fbjob)
-- ARGV: id, item, high ('1' = RPUSH, taken next), record ttl ms ('0' = no
--       status record), submitter, fingerprint
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local id = ARGV[1]
if redis.call('HEXISTS', Q.items, id) == 1 or (ARGV[4] ~= '0' and redis.call('EXISTS', Q.record) == 1) then
  return fberr('FBEXISTS ' .. (redis.call('HGET', Q.record, 'fingerprint') or ''))
end
if ARGV[3] == '1' then
  redis.call('RPUSH', Q.ids, id)
else
  redis.call('LPUSH', Q.ids, id)
end
redis.call('HSET', Q.items, id, ARGV[2])
local now = fbnow()
redis.call('ZADD', Q.published, now, id)
redis.call('INCR', Q.publishes)
if ARGV[4] ~= '0' then
  redis.call('HSET', Q.record, 'submitted_at', now)
  if ARGV[5] ~= '' then redis.call('HSET', Q.record, 'submitter', ARGV[5]) end
  if ARGV[6] ~= '' then redis.call('HSET', Q.record, 'fingerprint', ARGV[6]) end
  redis.call('PEXPIRE', Q.record, ARGV[4])
end
return 1
