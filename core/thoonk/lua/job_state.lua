-- Job state and the bridge's status record, in one read.
-- KEYS: job keys (fbjob)
-- ARGV: id
-- Replies {state, cancelled, has record (0/1), result or false, submitter
-- or false, failures or false, last error or false, retry due ms or
-- false}; state is 'queued', 'claimed', 'stalled' or 'gone' (not in the
-- job feed).
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
local id = ARGV[1]
local state = 'gone'
if redis.call('HEXISTS', Q.items, id) == 1 then
  if redis.call('ZSCORE', Q.claimed, id) then
    state = 'claimed'
  elseif redis.call('SISMEMBER', Q.stalled, id) == 1 then
    state = 'stalled'
  else
    state = 'queued'
  end
end
local rec = redis.call('HMGET', Q.record, 'result', 'submitter', 'failures', 'last_error')
return {state, redis.call('HGET', Q.cancelled, id) or '0', redis.call('EXISTS', Q.record), rec[1], rec[2], rec[3], rec[4],
  redis.call('ZSCORE', Q.delayed, id)}
