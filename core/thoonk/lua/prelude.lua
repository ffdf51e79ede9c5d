-- feedbridge prelude, prepended to every script.
-- KEYS[1] is always the feed's config hash, feed.config:[feed].
-- Errors are replied as "FB<CODE> [detail]" and mapped to Go errors.

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
  if not t then return redis.error_reply('FBNOFEED') end
  if t ~= want then return redis.error_reply('FBTYPE ' .. t) end
  return nil
end

-- fbnow is the server's clock in milliseconds since the Unix epoch.
local function fbnow()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- fbplace puts id into a sorted feed's ids list at a position (mode 'end',
-- 'begin', 'before' or 'after' rel) and returns the schema's position string.
local function fbplace(ids, id, mode, rel)
  if mode == 'end' then redis.call('RPUSH', ids, id); return ':end' end
  if mode == 'begin' then redis.call('LPUSH', ids, id); return 'begin:' end
  if mode == 'before' then redis.call('LINSERT', ids, 'BEFORE', rel, id); return ':' .. rel end
  redis.call('LINSERT', ids, 'AFTER', rel, id); return rel .. ':'
end

-- fbrecord keeps a finished job's result in the bridge's status record of
-- the job, when the bridge submitted it (the record exists).
local function fbrecord(record, result)
  if redis.call('EXISTS', record) == 0 then return 0 end
  redis.call('HSET', record, 'result', result, 'finished_at', fbnow())
  return 1
end

-- fbclaim claims job id (or pops the next available one when id is '').
-- Replies {id, item, cancelled}, {id} when the job vanished (retracted) or
-- is already claimed, or nil when none is available. An id popped by a
-- worker's BRPOP may meanwhile have been put back by maintenance (the
-- worker was slow to claim it): it is taken out of the list again, so the
-- job never runs twice.
local function fbclaim(ids, items, claimed, cancelled, id)
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

