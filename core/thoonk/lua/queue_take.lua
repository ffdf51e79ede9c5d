-- Queue take: pops the next id (ARGV[1] == '') or takes an id already popped
-- by BRPOP, and removes its item. Replies {id, item}, or nil when empty.
-- KEYS: config, ids (list), items
-- ARGV: id or ''
local e = fbneed(KEYS[1], 'queue'); if e then return e end
local id = ARGV[1]
if id == '' then
  id = redis.call('RPOP', KEYS[2])
  if not id then return nil end
end
local item = redis.call('HGET', KEYS[3], id)
redis.call('HDEL', KEYS[3], id)
if not item then return {id} end
return {id, item}
