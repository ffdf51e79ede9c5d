-- One page of a plain or sorted feed in display order: newest first for
-- plain feeds (by real time, also on a feed whose writers scored items in
-- different units), list (position) order for sorted feeds.
-- KEYS: config, ids, items, revs (the journal's revisions)[, companion hash]
-- ARGV: mode, id, hint, limit[, field prefix, ...]
--   mode 'first'  : from the start
--   mode 'index'  : from offset hint
--   mode 'after'  : the items after id; when id is gone, hint (plain: its
--                   score; sorted: its index) places the cursor, or '' fails
--   mode 'before' : the items before id (same fallback), nearest last
-- Replies {total, start, type, id1, score1, item1, rev1, id2, ...}; score
-- is '' for sorted feeds, rev '' without a journal revision. With a
-- companion hash (a caller's data kept per item id), each item's entry goes
-- on with the hash's field prefix .. id for every prefix given (false where
-- missing).
local t = fbtype(KEYS[1])
if not t then return fberr('FBNOFEED') end
if t ~= 'feed' and t ~= 'sorted_feed' then return fberr('FBTYPE ' .. t) end
local mode, id, hint, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local plain = t == 'feed'
local mixed = plain and fbmixed(KEYS[2])
local total
if plain then total = redis.call('ZCARD', KEYS[2]) else total = redis.call('LLEN', KEYS[2]) end

-- rank of the cursor id in display order, or its would-be rank when gone
-- (or, on plain feeds, edited since: an edit moves the item to the front,
-- and the cursor must stay where the item was when the cursor was made)
local function rank()
  local r
  if plain then
    local sc = redis.call('ZSCORE', KEYS[2], id)
    if sc and (hint == '' or tonumber(sc) == tonumber(hint)) then r = fbrank(KEYS[2], id, sc) end
  else
    r = redis.call('LPOS', KEYS[2], id)
  end
  if r then return r, true end
  if hint == '' then return nil, false end
  if not plain then return tonumber(hint), false end
  -- items newer than the gone cursor: a later real time, or the same
  -- score and a greater member (ZREVRANGE orders ties by descending member)
  local n
  if mixed then
    n = fbnewer(KEYS[2], hint)
  else
    n = redis.call('ZCOUNT', KEYS[2], '(' .. hint, '+inf')
  end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], hint, hint)) do
    if m > id then n = n + 1 end
  end
  return n, false
end

local start
if mode == 'first' then
  start = 0
elseif mode == 'index' then
  start = tonumber(hint)
elseif mode == 'after' then
  local r, found = rank()
  if not r then return fberr('FBNOITEM') end
  if found then start = r + 1 else start = r end
else
  local r = rank()
  if not r then return fberr('FBNOITEM') end
  start = r - limit
  if start < 0 then limit = limit + start; start = 0 end
end

local reply = {total, start, t}
if limit <= 0 or start >= total then return reply end
local stop = start + limit - 1
local ids
if mixed then
  local all = fbmerged(KEYS[2], stop + 1)
  ids = {}
  for i = 2 * start + 1, #all do ids[#ids + 1] = all[i] end
elseif plain then
  ids = redis.call('ZREVRANGE', KEYS[2], start, stop, 'WITHSCORES')
else
  local l = redis.call('LRANGE', KEYS[2], start, stop)
  ids = {}
  for _, v in ipairs(l) do ids[#ids + 1] = v; ids[#ids + 1] = '' end
end
if #ids == 0 then return reply end
local want = {}
for i = 1, #ids, 2 do want[#want + 1] = ids[i] end
local items = redis.call('HMGET', KEYS[3], unpack(want))
local revs = redis.call('HMGET', KEYS[4], unpack(want))
local joined = {}
if KEYS[5] then
  for j = 5, #ARGV do
    local fields = {}
    for i = 1, #want do fields[i] = ARGV[j] .. want[i] end
    joined[#joined + 1] = redis.call('HMGET', KEYS[5], unpack(fields))
  end
end
for i = 1, #want do
  reply[#reply + 1] = want[i]
  reply[#reply + 1] = ids[2 * i]
  reply[#reply + 1] = items[i]
  reply[#reply + 1] = revs[i] and string.match(revs[i], '^(%S+)') or ''
  for j = 1, #joined do reply[#reply + 1] = joined[j][i] end
end
return reply
