-- Feed delete: removes every key of the feed and publishes delfeed. With
-- the journal on, a 'delete' entry is appended and the journal kept for
-- its age bound, so readers learn of the delete.
-- KEYS: feeds (only when ARGV[3] == '1'), every schema key of the feed,
--       then journal, revs, journal meta
-- ARGV: feed, instance, checkset, journal max, journal max item, journal ttl ms
local first = 1
if ARGV[3] == '1' then
  if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return fberr('FBNOFEED') end
  first = 2
end
local n = #KEYS
redis.call('DEL', unpack(KEYS, first, n - 3))
local J = fbjournalspec(ARGV[1], KEYS[n - 2], KEYS[n - 1], KEYS[n], ARGV[4], ARGV[5])
if J then
  fbjournal(J, 'delete', '')
  local ttl = tonumber(ARGV[6]) or 0
  if ttl > 0 then
    redis.call('PEXPIRE', J.log, ttl)
    redis.call('PEXPIRE', J.meta, ttl)
  end
end
redis.call('PUBLISH', 'delfeed', ARGV[1] .. '\0' .. ARGV[2])
return 1
