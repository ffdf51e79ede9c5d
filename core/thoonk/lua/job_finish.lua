-- Job finish, publishing the result when one is given; the bridge's status
-- record (when the job has one) keeps the result. With ARGV[5] == '1' it
-- then claims the next available job in the same step and replies as
-- fbclaim; otherwise it replies 1.
-- KEYS: job keys (fbjob; the record is the finished job's)
-- ARGV: feed, id, hasresult ('1'), result, next ('1')
local Q = fbjob(1)
local r = fbfinish(Q, ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4])
if fbiserr(r) then return r end
if ARGV[5] == '1' then
  return fbclaim(Q.ids, Q.items, Q.claimed, Q.cancelled, '', Q.delayed)
end
return 1
