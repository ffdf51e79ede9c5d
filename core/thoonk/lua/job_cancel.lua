-- Job cancel: the job runs again, unless it has now been cancelled more
-- times than the feed's retry limit, in which case it is stalled.
-- KEYS: config, claimed, cancelled, ids (list), stalled, published
-- ARGV: id, maxretries (-1 = no limit), claimedbefore ('' = any claim time;
--       else only cancel when claimed at or before this time, in ms)
-- Replies {cancel count, 'available' | 'stalled'}.
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[2], id)
if not score then return redis.error_reply('FBNOTCLAIMED') end
-- claim times below 1e11 were written in seconds by older Thoonk writers
local at = tonumber(score)
if at < 1e11 then at = at * 1000 end
if ARGV[3] ~= '' and at > tonumber(ARGV[3]) then return redis.error_reply('FBNOTCLAIMED') end
redis.call('ZREM', KEYS[2], id)
local n = redis.call('HINCRBY', KEYS[3], id, 1)
local max = tonumber(ARGV[2])
if max >= 0 and n > max then
  redis.call('HDEL', KEYS[3], id)
  redis.call('SADD', KEYS[5], id)
  redis.call('ZREM', KEYS[6], id)
  return {n, 'stalled'}
end
redis.call('LPUSH', KEYS[4], id)
return {n, 'available'}
