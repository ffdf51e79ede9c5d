-- KEYS: config, then (optional) journal and journal meta
-- ARGV: feed, instance, isnew ('1' publishes newfeed first), field, value, ...
-- A change to an existing feed fails when the feed is gone (a concurrent
-- delete), rather than leaving a config without a feed. A new feed keeps
-- the journal a deleted feed of the same name left (no longer expiring).
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return fberr('FBNOFEED') end
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
if ARGV[3] == '1' and #KEYS >= 3 then
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[3])
end
local payload = ARGV[1] .. '\0' .. ARGV[2]
if ARGV[3] == '1' then redis.call('PUBLISH', 'newfeed', payload) end
redis.call('PUBLISH', 'conffeed', payload)
return 1
