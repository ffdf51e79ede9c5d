-- Applies an action job's change to its feed exactly once. With a marker
-- key (the job feed lives in another Cluster slot), the change and the
-- marker are written together, and a job run again finds the marker and
-- replies the first outcome without changing anything. With finish, the
-- job feed shares the feed's slot: the change, the job's finish with its
-- result, and the claim of the next job are one step, and a job no longer
-- claimed by this worker changes nothing.
-- KEYS: feed keys (fbfeed), marker (with ARGV[11] > 0), then with finish
--       the job keys (fbjob; the record is this job's)
-- ARGV: feed, journal max, journal max item, verb (publish, edit, retract,
--       move), id, item, position mode ('end', 'begin', 'before', 'after'
--       or '' for none), rel, publish mode ('', 'create'), expected
--       revision ('' = none), marker ttl ms ('0' = no marker), finish ('1'),
--       job feed, job id, claim next ('1'), id for a plain-feed publish
--       without one
-- Replies {code, id, revision or '', replayed (0/1), next job or absent},
-- or an error reply (nothing changed): FBNOFEED, FBTYPE t, FBNOITEM,
-- FBNOREL, FBITEMEXISTS, FBCONFLICT rev, FBNOTCLAIMED, FBPOSITION,
-- FBSORTEDID, FBNOJOURNAL.
local K, J, feed = fbfeed(1, 1)
local verb, id, item, pmode, rel, pubmode, expect = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local markerttl, finish = tonumber(ARGV[11]) or 0, ARGV[12] == '1'
local marker = KEYS[9]
local Q
if finish then Q = fbjob(10) end

local function done(code, rid, rev, replayed)
  local out = {code, rid, rev or '', replayed}
  if finish then
    local result = '{"ok":true,"code":' .. code
    if rid ~= '' then result = result .. ',"id":' .. fbjsonstr(rid) end
    if rev and rev ~= '' then result = result .. ',"rev":' .. fbjsonstr(rev) end
    result = result .. '}'
    local r = fbfinish(Q, ARGV[13], ARGV[14], true, result)
    if fbiserr(r) then return r end
    if ARGV[15] == '1' then
      local nextjob = fbclaim(Q.ids, Q.items, Q.claimed, Q.cancelled, '', Q.delayed)
      if nextjob then out[5] = nextjob end
    end
  end
  return out
end

if finish then
  local e = fbneed(Q.cfg, 'job'); if e then return e end
  if not redis.call('ZSCORE', Q.claimed, ARGV[14]) then return fberr('FBNOTCLAIMED') end
end
if markerttl > 0 then
  local m = redis.call('GET', marker)
  if m then
    local code, rev, rid = string.match(m, '^(%d+)\n([^\n]*)\n(.*)$')
    return done(tonumber(code), rid, rev, 1)
  end
end
local t = fbtype(K.cfg)
if not t then return fberr('FBNOFEED') end
if t ~= 'feed' and t ~= 'sorted_feed' then return fberr('FBTYPE ' .. t) end
if expect ~= '' then
  if not J then return fberr('FBNOJOURNAL') end
  local cur = fbrevparse(redis.call('HGET', J.revs, id)) or ''
  if cur ~= expect then return fberr('FBCONFLICT ' .. cur) end
end

local r, code, rid = nil, 200, id
if t == 'feed' then
  if pmode ~= '' then return fberr('FBPOSITION') end
  if verb == 'publish' then
    if id == '' then id, rid = ARGV[16], ARGV[16] end
    r = fbpublish(K, feed, id, item, pubmode, J)
    if not fbiserr(r) and r == 1 then code = 201 end
  elseif verb == 'edit' then
    r = fbpublish(K, feed, id, item, 'edit', J)
  elseif verb == 'retract' then
    r = fbretract(K, feed, id, J)
  else
    return fberr('FBTYPE feed')
  end
else
  if verb == 'publish' then
    if id ~= '' then return fberr('FBSORTEDID') end
    r = fbsinsert(K, feed, pmode ~= '' and pmode or 'end', rel, item, J)
    if not fbiserr(r) then rid, code = r, 201 end
  elseif verb == 'edit' then
    r = fbsedit(K, feed, id, item, J)
  elseif verb == 'retract' then
    r = fbsretract(K, feed, id, J)
  else
    if pmode == '' then return fberr('FBPOSITION') end
    r = fbsmove(K, feed, id, pmode, rel, J)
  end
end
if fbiserr(r) then return r end
local rev = fblast or ''
if markerttl > 0 then
  redis.call('SET', marker, code .. '\n' .. rev .. '\n' .. rid, 'PX', markerttl)
end
return done(code, rid, rev, 0)
