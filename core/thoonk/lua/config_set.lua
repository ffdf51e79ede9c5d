-- KEYS: config
-- ARGV: feed, instance, isnew ('1' publishes newfeed first), field, value, ...
-- A change to an existing feed fails when the feed is gone (a concurrent
-- delete), rather than leaving a config without a feed.
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('FBNOFEED') end
if #ARGV > 3 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
end
local payload = ARGV[1] .. '\0' .. ARGV[2]
if ARGV[3] == '1' then redis.call('PUBLISH', 'newfeed', payload) end
redis.call('PUBLISH', 'conffeed', payload)
return 1
