-- Job requeue of lost jobs: ids present in items but in none of available,
-- claimed, stalled or waiting for a retry go back to available. Each id is
-- re-checked here, atomically, so concurrent maintenance in several
-- processes is safe. Due retries are made available too.
-- KEYS: job keys (fbjob; no record)
-- ARGV: id, ...   Replies the ids put back.
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
fbpromote(Q.delayed, Q.ids)
local back = {}
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', Q.items, id) == 1
    and not redis.call('ZSCORE', Q.claimed, id)
    and not redis.call('ZSCORE', Q.delayed, id)
    and redis.call('SISMEMBER', Q.stalled, id) == 0
    and not redis.call('LPOS', Q.ids, id) then
    redis.call('LPUSH', Q.ids, id)
    redis.call('ZADD', Q.published, 'NX', fbnow(), id)
    back[#back + 1] = id
  end
end
return back
