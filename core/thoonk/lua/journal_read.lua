-- Reads a feed's journal after an entry id.
-- KEYS: journal, journal meta
-- ARGV: after ('0-0' = from the start of the journal), count, mode ('time':
--       after is a point in time, not necessarily an entry of this journal)
-- Replies {'ok', last entry id or '', entry, ...} with each entry as
-- {id, {field, value, ...}}, or {'gap', reason}: 'trimmed' (entries after
-- the id are no longer kept) or 'unknown' (the id is not from this
-- journal: it was lost and begun again, or the id is from elsewhere; never
-- in 'time' mode).
local after, count, timed = ARGV[1], tonumber(ARGV[2]), ARGV[3] == 'time'
local meta = redis.call('HMGET', KEYS[2], 'floor', 'born')
local floor, born = meta[1], meta[2]
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastid = ''
if last[1] then lastid = last[1][1] end

-- idlt compares two stream ids numerically
local function idlt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

if not string.match(after, '^%d+%-%d+$') then return {'gap', 'unknown'} end
if after == '0-0' then
  if floor then return {'gap', 'trimmed'} end
else
  if not timed then
    if not born or idlt(after, born) then return {'gap', 'unknown'} end
    if lastid ~= '' and idlt(lastid, after) then return {'gap', 'unknown'} end
  end
  if floor and idlt(after, floor) then return {'gap', 'trimmed'} end
end
local out = {'ok', lastid}
local entries = redis.call('XRANGE', KEYS[1], '(' .. after, '+', 'COUNT', count)
for _, e in ipairs(entries) do out[#out + 1] = e end
return out
