-- Queue put. No pubsub traffic.
-- KEYS: config, ids (list), items, publishes
-- ARGV: id, item, high ('1' = RPUSH, taken next)
local e = fbneed(KEYS[1], 'queue'); if e then return e end
if ARGV[3] == '1' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[4])
return 1
