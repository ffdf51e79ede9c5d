-- Job requeue of lost jobs: ids present in items but in none of available,
-- claimed or stalled go back to available. Each id is re-checked here,
-- atomically, so concurrent maintenance in several processes is safe.
-- KEYS: config, items, ids (list), claimed, stalled, published
-- ARGV: id, ...   Replies the ids put back.
local e = fbneed(KEYS[1], 'job'); if e then return e end
local back = {}
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[2], id) == 1
    and not redis.call('ZSCORE', KEYS[4], id)
    and redis.call('SISMEMBER', KEYS[5], id) == 0
    and not redis.call('LPOS', KEYS[3], id) then
    redis.call('LPUSH', KEYS[3], id)
    redis.call('ZADD', KEYS[6], 'NX', fbnow(), id)
    back[#back + 1] = id
  end
end
return back
