-- Job finish, publishing the result when one is given; the bridge's status
-- record (when the job has one) keeps the result. With ARGV[5] == '1' it
-- then claims the next available job in the same step and replies as
-- fbclaim; otherwise it replies 1.
-- KEYS: config, claimed, cancelled, published, finishes, items, record, ids
-- ARGV: feed, id, hasresult ('1'), result, next ('1')
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[2]
if redis.call('ZREM', KEYS[2], id) == 0 then return redis.error_reply('FBNOTCLAIMED') end
redis.call('HDEL', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('INCR', KEYS[5])
redis.call('HDEL', KEYS[6], id)
if ARGV[3] == '1' then
  fbrecord(KEYS[7], ARGV[4])
  redis.call('PUBLISH', 'job.finish:' .. ARGV[1], id .. '\0' .. ARGV[4])
end
if ARGV[5] == '1' then
  return fbclaim(KEYS[8], KEYS[6], KEYS[2], KEYS[3], '')
end
return 1
