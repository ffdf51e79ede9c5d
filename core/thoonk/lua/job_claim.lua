-- Job claim: pops the next available id (ARGV[1] == '') or claims an id
-- already popped by BRPOP, after making due retries available; replies as
-- fbclaim.
-- KEYS: job keys (fbjob)
-- ARGV: id or ''
local Q = fbjob(1)
local e = fbneed(Q.cfg, 'job'); if e then return e end
return fbclaim(Q.ids, Q.items, Q.claimed, Q.cancelled, ARGV[1], Q.delayed)
