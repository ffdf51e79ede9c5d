-- Sorted feed edit of an existing item.
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, id, item
local K, J, feed = fbfeed(1, 1)
return fbsedit(K, feed, ARGV[4], ARGV[5], J)
