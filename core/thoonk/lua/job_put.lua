-- Job put.
-- KEYS: config, ids (list), items, published (zset), publishes, record
-- ARGV: id, item, high ('1' = RPUSH, taken next), record ttl ms ('0' = no status record), submitter
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[3], id) == 1 then return redis.error_reply('FBEXISTS') end
if ARGV[3] == '1' then
  redis.call('RPUSH', KEYS[2], id)
else
  redis.call('LPUSH', KEYS[2], id)
end
redis.call('HSET', KEYS[3], id, ARGV[2])
local now = fbnow()
redis.call('ZADD', KEYS[4], now, id)
redis.call('INCR', KEYS[5])
if ARGV[4] ~= '0' then
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[6], 'submitted_at', now)
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[6], 'submitter', ARGV[5]) end
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
end
return 1
