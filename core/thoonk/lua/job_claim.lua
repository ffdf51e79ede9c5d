-- Job claim: pops the next available id (ARGV[1] == '') or claims an id
-- already popped by BRPOP; replies as fbclaim.
-- KEYS: config, ids (list), items, claimed (zset), cancelled (hash)
-- ARGV: id or ''
local e = fbneed(KEYS[1], 'job'); if e then return e end
return fbclaim(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1])
