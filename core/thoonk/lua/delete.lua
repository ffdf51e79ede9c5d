-- KEYS: feeds (only when ARGV[3] == '1'), then every key of the feed
-- ARGV: feed, instance, checkset
local first = 1
if ARGV[3] == '1' then
  if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return redis.error_reply('FBNOFEED') end
  first = 2
end
redis.call('DEL', unpack(KEYS, first))
redis.call('PUBLISH', 'delfeed', ARGV[1] .. '\0' .. ARGV[2])
return 1
