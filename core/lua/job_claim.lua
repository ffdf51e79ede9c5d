-- Job claim: pops the next available id (ARGV[1] == '') or claims an id
-- already popped by BRPOP. Replies {id, item, cancelled}, {id} when the
-- job vanished meanwhile (retracted), or nil when none is available.
-- KEYS: config, ids (list), items, claimed (zset), cancelled (hash)
-- ARGV: id or ''
local e = fbneed(KEYS[1], 'job'); if e then return e end
local id = ARGV[1]
if id == '' then
  id = redis.call('RPOP', KEYS[2])
  if not id then return nil end
end
local item = redis.call('HGET', KEYS[3], id)
if not item then return {id} end
redis.call('ZADD', KEYS[4], fbnow(), id)
return {id, item, redis.call('HGET', KEYS[5], id) or '0'}
