-- feedbridge prelude, prepended to every script: the operations of the
-- Thoonk schema as functions, so that one script can combine several (an
-- action applied and its job finished in one step) and every change is
-- journaled the same way.
-- KEYS[1] is always the feed's config hash, feed.config:[feed].
-- Errors are replied as "FB<CODE> [detail]" and mapped to Go errors.

-- fberr returns an error reply; fbiserr tells one from any other value.
local function fberr(code) return redis.error_reply(code) end
local function fbiserr(v) return type(v) == 'table' and v.err ~= nil end

-- fbtype returns the feed's type, 'feed' when the config has no type
-- field, or nil when the feed has no config at all (does not exist).
local function fbtype(cfg)
  local t = redis.call('HGET', cfg, 'type')
  if t then return t end
  if redis.call('EXISTS', cfg) == 1 then return 'feed' end
  return nil
end

-- fbneed returns an error reply unless the feed exists and has type want.
local function fbneed(cfg, want)
  local t = fbtype(cfg)
  if not t then return fberr('FBNOFEED') end
  if t ~= want then return fberr('FBTYPE ' .. t) end
  return nil
end

-- fbnow is the server's clock in milliseconds since the Unix epoch.
local function fbnow()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Plain-feed scores are publish times: milliseconds for thoonk.js 0.5, the
-- Lua-era scripts and feedbridge, seconds (a float) for thoonk.py. Scores
-- below FBSECS (before 1973 in ms) are seconds.
local FBSECS = 1e11

-- fbnorm returns a score as milliseconds.
local function fbnorm(score)
  local s = tonumber(score)
  if s < FBSECS then return s * 1000 end
  return s
end

-- fbscore returns the score a publish writes now: in the feed's existing
-- unit, so that order and trimming stay right for every writer. A feed
-- holding any item scored in seconds, or configured score_unit=s (unit),
-- gets seconds (with milliseconds as decimals); any other gets
-- milliseconds.
local function fbscore(ids, unit)
  local now = fbnow()
  local secs = unit == 's'
  if not unit then
    local low = redis.call('ZRANGE', ids, 0, 0, 'WITHSCORES')
    secs = low[2] ~= nil and tonumber(low[2]) < FBSECS
  end
  if secs then return string.format('%d.%03d', math.floor(now / 1000), now % 1000) end
  return now
end

-- fbmixed reports whether a plain feed holds scores of both units.
local function fbmixed(ids)
  local low = redis.call('ZRANGE', ids, 0, 0, 'WITHSCORES')
  if not low[2] or tonumber(low[2]) >= FBSECS then return false end
  local high = redis.call('ZRANGE', ids, -1, -1, 'WITHSCORES')
  return tonumber(high[2]) >= FBSECS
end

-- fbmerged returns the first n members of a mixed plain feed in display
-- order (newest first by real time; equal times by descending member, as
-- ZREVRANGE orders them), as a flat {id, score, ...} list, taking at most
-- n from each unit's range.
local function fbmerged(ids, n)
  local out = {}
  if n <= 0 then return out end
  local a = redis.call('ZREVRANGEBYSCORE', ids, '+inf', FBSECS, 'WITHSCORES', 'LIMIT', 0, n)
  local b = redis.call('ZREVRANGEBYSCORE', ids, '(' .. FBSECS, '-inf', 'WITHSCORES', 'LIMIT', 0, n)
  local i, j = 1, 1
  while #out < 2 * n and (i <= #a or j <= #b) do
    local takeA
    if i > #a then takeA = false
    elseif j > #b then takeA = true
    else
      local ta, tb = fbnorm(a[i + 1]), fbnorm(b[j + 1])
      takeA = ta > tb or (ta == tb and a[i] > b[j])
    end
    if takeA then
      out[#out + 1] = a[i]; out[#out + 1] = a[i + 1]; i = i + 2
    else
      out[#out + 1] = b[j]; out[#out + 1] = b[j + 1]; j = j + 2
    end
  end
  return out
end

-- fbnum renders a computed score at full precision (tostring keeps 14 digits).
local function fbnum(x) return string.format('%.17g', x) end

-- fbnewer counts the members of a mixed plain feed newer by real time than
-- score (as Redis returns it: full precision), not counting equal scores:
-- exactly within score's unit, to the float's precision across units.
local function fbnewer(ids, score)
  local s = tonumber(score)
  if s < FBSECS then
    return redis.call('ZCOUNT', ids, '(' .. score, '(' .. FBSECS)
      + redis.call('ZCOUNT', ids, '(' .. fbnum(math.max(s * 1000, FBSECS)), '+inf')
  end
  return redis.call('ZCOUNT', ids, '(' .. score, '+inf')
    + redis.call('ZCOUNT', ids, '(' .. fbnum(s / 1000), '(' .. FBSECS)
end

-- fbrank returns the index of member id (with score, as Redis returns it)
-- in a plain feed's display order. Equal scores order by descending
-- member; equal real times written in different units are too rare to
-- order.
local function fbrank(ids, id, score)
  if not fbmixed(ids) then return redis.call('ZREVRANK', ids, id) end
  local n = fbnewer(ids, score)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', ids, score, score)) do
    if m > id then n = n + 1 end
  end
  return n
end

-- fboldest returns the id of a plain feed's oldest item by real time,
-- other than except, or nil.
local function fboldest(ids, except)
  local best, bestT
  for _, range in ipairs({{'-inf', '(' .. FBSECS}, {FBSECS, '+inf'}}) do
    local c = redis.call('ZRANGEBYSCORE', ids, range[1], range[2], 'WITHSCORES', 'LIMIT', 0, 2)
    for i = 1, #c, 2 do
      if c[i] ~= except then
        local t = fbnorm(c[i + 1])
        if not bestT or t < bestT or (t == bestT and c[i] < best) then best, bestT = c[i], t end
        break
      end
    end
  end
  return best
end

-- The journal (feedbridge's, optional): J is nil (off) or a table
-- {feed, log (stream), revs (hash id -> "entry-id sum"), meta (hash),
-- max (entries kept), maxitem (largest item kept in an entry)}, built by
-- fbjournalspec from a script's KEYS and ARGV.
local function fbjournalspec(feed, logk, revs, meta, max, maxitem)
  local m = tonumber(max) or 0
  if m <= 0 then return nil end
  return {feed = feed, log = logk, revs = revs, meta = meta, max = m, maxitem = tonumber(maxitem) or 0}
end

-- fbsum is the short content hash kept per item (the first 16 hex digits
-- of its SHA-1).
local function fbsum(item) return string.sub(redis.sha1hex(item), 1, 16) end

-- fblast is the id of the journal entry this script appended last.
local fblast = nil

-- fbrevparse splits a revisions-hash value "entry-id sum[ position]".
local function fbrevparse(v)
  if not v then return nil, nil, nil end
  local eid, sum, pos = string.match(v, '^(%S+) (%S*) ?(.*)$')
  return eid, sum, pos
end

-- fbjournal appends one change to the feed's journal, keeps the item's
-- revision (with its content sum and, on sorted feeds, its last position
-- string; keep carries over the ones not given), trims the journal to its bound (recording below which entries
-- are gone) and announces the entry on feedbridge.journal:[feed] as
-- "entry-id\0type\0id\0position\0kind\0item", kind 'i' (item inline), 's'
-- (too large: read the feed; the last field is then the item's sum) or ''
-- (no item). Returns the entry id.
local function fbjournal(J, typ, id, item, pos, keep)
  if not J then return nil end
  local f = {'t', typ, 'id', id}
  local kind, inline = '', ''
  local sum
  if item then
    sum = fbsum(item)
    if #item <= J.maxitem then
      f[#f + 1] = 'item'; f[#f + 1] = item; kind, inline = 'i', item
    else
      f[#f + 1] = 'sum'; f[#f + 1] = sum; kind, inline = 's', sum
    end
  end
  if pos and pos ~= '' then f[#f + 1] = 'pos'; f[#f + 1] = pos end
  local eid = redis.call('XADD', J.log, '*', unpack(f))
  fblast = eid
  if typ == 'retract' then
    redis.call('HDEL', J.revs, id)
  elseif typ == 'delete' then
    redis.call('DEL', J.revs)
  else
    if keep then
      local _, oldsum, oldpos = fbrevparse(redis.call('HGET', J.revs, id))
      sum = sum or oldsum
      pos = pos or oldpos
    end
    sum, pos = sum or '', pos or ''
    local v = eid .. ' ' .. sum
    if pos ~= '' then v = v .. ' ' .. pos end
    redis.call('HSET', J.revs, id, v)
  end
  local n = redis.call('XLEN', J.log)
  if n == 1 then
    redis.call('HSETNX', J.meta, 'born', eid)
  elseif n > J.max + 64 then
    local gone = redis.call('XRANGE', J.log, '-', '+', 'COUNT', n - J.max + 1)
    redis.call('XTRIM', J.log, 'MINID', gone[#gone][1])
    redis.call('HSET', J.meta, 'floor', gone[#gone - 1][1])
  end
  redis.call('PUBLISH', 'feedbridge.journal:' .. J.feed,
    eid .. '\0' .. typ .. '\0' .. id .. '\0' .. (pos or '') .. '\0' .. kind .. '\0' .. inline)
  return eid
end

-- fbretractplain removes id from a plain feed and announces it; false
-- when the id is not there.
local function fbretractplain(K, feed, id, J)
  if redis.call('ZREM', K.ids, id) == 0 then return false end
  redis.call('HDEL', K.items, id)
  redis.call('PUBLISH', 'feed.retract:' .. feed, id)
  fbjournal(J, 'retract', id)
  return true
end

-- fbpublish is a plain feed's publish (new id) or edit (existing id),
-- trimming to max_length. K: cfg, ids, items, publishes. mode: '' (either),
-- 'edit' (only an existing id), 'create' (only a new id). Returns 1 for a
-- new id, 0 for an edit, or an error reply.
local function fbpublish(K, feed, id, item, mode, J)
  -- type, max_length and score_unit in one read
  local cfg = redis.call('HMGET', K.cfg, 'type', 'max_length', 'score_unit')
  local t = cfg[1]
  if not t then
    if redis.call('EXISTS', K.cfg) == 0 then return fberr('FBNOFEED') end
    t = 'feed'
  end
  if t ~= 'feed' then return fberr('FBTYPE ' .. t) end
  local max = tonumber(cfg[2] or '0') or 0
  local exists = false
  if mode ~= '' or max > 0 then exists = redis.call('ZSCORE', K.ids, id) end
  if mode == 'edit' and not exists then return fberr('FBNOITEM') end
  if mode == 'create' and exists then return fberr('FBITEMEXISTS') end
  if max > 0 then
    local excess = redis.call('ZCARD', K.ids) + (exists and 0 or 1) - max
    if excess > 0 and fbmixed(K.ids) then
      while excess > 0 do
        local rid = fboldest(K.ids, id)
        if not rid then break end
        fbretractplain(K, feed, rid, J)
        excess = excess - 1
      end
    elseif excess > 0 then
      -- the oldest ids, one spare in case the id being published is among them
      for _, rid in ipairs(redis.call('ZRANGE', K.ids, 0, excess)) do
        if excess <= 0 then break end
        if rid ~= id then
          fbretractplain(K, feed, rid, J)
          excess = excess - 1
        end
      end
    end
  end
  local added = redis.call('ZADD', K.ids, fbscore(K.ids, cfg[3]), id)
  redis.call('INCR', K.publishes)
  redis.call('HSET', K.items, id, item)
  if added == 1 then
    redis.call('PUBLISH', 'feed.publish:' .. feed, id .. '\0' .. item)
    fbjournal(J, 'publish', id, item)
  else
    redis.call('PUBLISH', 'feed.edit:' .. feed, id .. '\0' .. item)
    fbjournal(J, 'edit', id, item)
  end
  return added
end

-- fbretract is a plain feed's retract. K: cfg, ids, items.
local function fbretract(K, feed, id, J)
  local e = fbneed(K.cfg, 'feed'); if e then return e end
  if not fbretractplain(K, feed, id, J) then return fberr('FBNOITEM') end
  return 1
end

-- fbplace puts id into a sorted feed's ids list at a position (mode 'end',
-- 'begin', 'before' or 'after' rel) and returns the schema's position string.
local function fbplace(ids, id, mode, rel)
  if mode == 'end' then redis.call('RPUSH', ids, id); return ':end' end
  if mode == 'begin' then redis.call('LPUSH', ids, id); return 'begin:' end
  if mode == 'before' then redis.call('LINSERT', ids, 'BEFORE', rel, id); return ':' .. rel end
  redis.call('LINSERT', ids, 'AFTER', rel, id); return rel .. ':'
end

-- fbsinsert adds an item to a sorted feed. K: cfg, ids, items, idincr,
-- publishes. Returns the new id or an error reply.
local function fbsinsert(K, feed, mode, rel, item, J)
  local e = fbneed(K.cfg, 'sorted_feed'); if e then return e end
  if (mode == 'before' or mode == 'after') and redis.call('HEXISTS', K.items, rel) == 0 then
    return fberr('FBNOREL')
  end
  local id = tostring(redis.call('INCR', K.idincr))
  local pos = fbplace(K.ids, id, mode, rel)
  redis.call('HSET', K.items, id, item)
  redis.call('INCR', K.publishes)
  redis.call('PUBLISH', 'feed.publish:' .. feed, id .. '\0' .. item)
  redis.call('PUBLISH', 'feed.position:' .. feed, id .. '\0' .. pos)
  fbjournal(J, 'publish', id, item, pos)
  return id
end

-- fbsedit replaces an existing sorted-feed item. K: cfg, items, publishes.
local function fbsedit(K, feed, id, item, J)
  local e = fbneed(K.cfg, 'sorted_feed'); if e then return e end
  if redis.call('HEXISTS', K.items, id) == 0 then return fberr('FBNOITEM') end
  redis.call('HSET', K.items, id, item)
  redis.call('INCR', K.publishes)
  redis.call('PUBLISH', 'feed.publish:' .. feed, id .. '\0' .. item)
  fbjournal(J, 'edit', id, item, nil, true)
  return 1
end

-- fbsmove moves a sorted-feed item. K: cfg, ids, items.
local function fbsmove(K, feed, id, mode, rel, J)
  local e = fbneed(K.cfg, 'sorted_feed'); if e then return e end
  if redis.call('HEXISTS', K.items, id) == 0 then return fberr('FBNOITEM') end
  if mode == 'before' or mode == 'after' then
    if rel == id or redis.call('HEXISTS', K.items, rel) == 0 then return fberr('FBNOREL') end
  end
  redis.call('LREM', K.ids, 1, id)
  local pos = fbplace(K.ids, id, mode, rel)
  redis.call('PUBLISH', 'feed.position:' .. feed, id .. '\0' .. pos)
  fbjournal(J, 'position', id, nil, pos, true)
  return 1
end

-- fbsretract removes a sorted-feed item. K: cfg, ids, items.
local function fbsretract(K, feed, id, J)
  local e = fbneed(K.cfg, 'sorted_feed'); if e then return e end
  if redis.call('LREM', K.ids, 1, id) == 0 then return fberr('FBNOITEM') end
  redis.call('HDEL', K.items, id)
  redis.call('PUBLISH', 'feed.retract:' .. feed, id)
  fbjournal(J, 'retract', id)
  return 1
end

-- fbrecord keeps a finished job's result in the bridge's status record of
-- the job, when the bridge submitted it (the record exists).
local function fbrecord(record, result)
  if redis.call('EXISTS', record) == 0 then return 0 end
  redis.call('HSET', record, 'result', result, 'finished_at', fbnow())
  return 1
end

-- fbpromote makes delayed jobs (retries waiting out their backoff) whose
-- time has come available again, oldest due first.
local function fbpromote(delayed, ids)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', fbnow(), 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', delayed, id)
    redis.call('LPUSH', ids, id)
  end
end

-- fbclaim claims job id (or pops the next available one when id is '').
-- Replies {id, item, cancelled}, {id} when the job vanished (retracted) or
-- is already claimed, or nil when none is available. An id popped by a
-- worker's BRPOP may meanwhile have been put back by maintenance (the
-- worker was slow to claim it): it is taken out of the list again, so the
-- job never runs twice.
local function fbclaim(ids, items, claimed, cancelled, id, delayed)
  if delayed then fbpromote(delayed, ids) end
  if id == '' then
    id = redis.call('RPOP', ids)
    if not id then return nil end
  else
    if redis.call('ZSCORE', claimed, id) then return {id} end
    redis.call('LREM', ids, 0, id)
  end
  local item = redis.call('HGET', items, id)
  if not item then return {id} end
  redis.call('ZADD', claimed, fbnow(), id)
  return {id, item, redis.call('HGET', cancelled, id) or '0'}
end

-- fbfinish completes a claimed job, publishing the result when hasresult.
-- Q: cfg, claimed, cancelled, published, finishes, items, record.
local function fbfinish(Q, feed, id, hasresult, result)
  local e = fbneed(Q.cfg, 'job'); if e then return e end
  if redis.call('ZREM', Q.claimed, id) == 0 then return fberr('FBNOTCLAIMED') end
  redis.call('HDEL', Q.cancelled, id)
  redis.call('ZREM', Q.published, id)
  redis.call('INCR', Q.finishes)
  redis.call('HDEL', Q.items, id)
  if hasresult then
    fbrecord(Q.record, result)
    redis.call('PUBLISH', 'job.finish:' .. feed, id .. '\0' .. result)
  elseif redis.call('EXISTS', Q.record) == 1 then
    redis.call('HSET', Q.record, 'finished_at', fbnow())
  end
  return 1
end

-- fbfeed reads the feed keys a changing script gets at KEYS[b..b+7] (cfg,
-- ids, items, publishes, idincr, journal, revs, journal meta) and the feed
-- name and journal bounds at ARGV[a..a+2], as K and J.
local function fbfeed(b, a)
  local K = {cfg = KEYS[b], ids = KEYS[b + 1], items = KEYS[b + 2], publishes = KEYS[b + 3], idincr = KEYS[b + 4]}
  local J = fbjournalspec(ARGV[a], KEYS[b + 5], KEYS[b + 6], KEYS[b + 7], ARGV[a + 1], ARGV[a + 2])
  return K, J, ARGV[a]
end

-- fbjob reads the job-feed keys a script gets at KEYS[b..b+10] (cfg, ids,
-- items, published, claimed, stalled, cancelled, finishes, publishes,
-- delayed, and the job's status record).
local function fbjob(b)
  return {cfg = KEYS[b], ids = KEYS[b + 1], items = KEYS[b + 2], published = KEYS[b + 3], claimed = KEYS[b + 4],
    stalled = KEYS[b + 5], cancelled = KEYS[b + 6], finishes = KEYS[b + 7], publishes = KEYS[b + 8],
    delayed = KEYS[b + 9], record = KEYS[b + 10]}
end

-- fbjsonstr renders a string as JSON the way Go's encoding/json does
-- without HTML escaping (for the ids and revisions of results).
local function fbjsonstr(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    if c == '\n' then return '\\n' end
    if c == '\r' then return '\\r' end
    if c == '\t' then return '\\t' end
    return string.format('\\u%04x', string.byte(c))
  end)
  s = string.gsub(s, '\226\128\168', '\\u2028')
  s = string.gsub(s, '\226\128\169', '\\u2029')
  return '"' .. s .. '"'
end
