-- Journals a change another Thoonk writer made (seen on pubsub, or found
-- by a reconciliation), unless it is already journaled or no longer what
-- the feed holds (a later change will be observed in its turn).
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, type ('publish' | 'edit' |
--       'retract' | 'position'), id, item (publish, edit) or position
--       string (position), position string of a new sorted-feed item ('' = none)
-- Replies the new entry's id, or '' when nothing was journaled.
local K, J, feed = fbfeed(1, 1)
if not J then return '' end
local t = fbtype(K.cfg)
if t ~= 'feed' and t ~= 'sorted_feed' then return '' end
local typ, id = ARGV[4], ARGV[5]
local rev, sum, pos = fbrevparse(redis.call('HGET', J.revs, id))
if typ == 'publish' or typ == 'edit' then
  local item = ARGV[6]
  if redis.call('HGET', K.items, id) ~= item then return '' end
  if rev and sum == fbsum(item) then return '' end
  local kind = 'publish'
  if rev then kind = 'edit' end
  local p = nil
  if kind == 'publish' and ARGV[7] ~= '' then p = ARGV[7] end
  return fbjournal(J, kind, id, item, p, kind == 'edit')
elseif typ == 'retract' then
  if not rev or redis.call('HEXISTS', K.items, id) == 1 then return '' end
  return fbjournal(J, 'retract', id)
elseif typ == 'position' then
  if t ~= 'sorted_feed' or redis.call('HEXISTS', K.items, id) == 0 then return '' end
  if rev and pos == ARGV[6] then return '' end
  return fbjournal(J, 'position', id, nil, ARGV[6], true)
end
return ''
