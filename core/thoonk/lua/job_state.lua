-- Job state and the bridge's status record, in one read.
-- KEYS: config, items, claimed, stalled, cancelled, record
-- ARGV: id
-- Replies {state, cancelled, has record (0/1), result or false, submitter
-- or false, last error or false}; state is 'queued', 'claimed', 'stalled' or 'gone' (not in the
-- job feed).
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
local state = 'gone'
if redis.call('HEXISTS', KEYS[2], id) == 1 then
  if redis.call('ZSCORE', KEYS[3], id) then
    state = 'claimed'
  elseif redis.call('SISMEMBER', KEYS[4], id) == 1 then
    state = 'stalled'
  else
    state = 'queued'
  end
end
return {state, redis.call('HGET', KEYS[5], id) or '0', redis.call('EXISTS', KEYS[6]), redis.call('HGET', KEYS[6], 'result'),
  redis.call('HGET', KEYS[6], 'submitter'), redis.call('HGET', KEYS[6], 'last_error')}
