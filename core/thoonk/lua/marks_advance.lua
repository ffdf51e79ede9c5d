-- Readers' marks: sets each field of a hash to a journal revision unless it
-- holds a later one already, so that a mark only moves on (a late write from
-- a process that lost its lead cannot take one back); a value that is no
-- revision is replaced. With a TTL, the hash then expires after it.
-- KEYS: the hash
-- ARGV: ttl in ms ('0': none), field, revision, field, revision, ...
-- Replies the number of fields set.
local function rev(v)
  local ms, n = string.match(v or '', '^(%d+)-(%d+)$')
  if not ms then return nil end
  return tonumber(ms), tonumber(n)
end
local set = 0
for i = 2, #ARGV, 2 do
  local cm, cn = rev(redis.call('HGET', KEYS[1], ARGV[i]))
  local nm, nn = rev(ARGV[i + 1])
  if nm and (not cm or cm < nm or (cm == nm and cn < nn)) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    set = set + 1
  end
end
local ttl = tonumber(ARGV[1]) or 0
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return set
