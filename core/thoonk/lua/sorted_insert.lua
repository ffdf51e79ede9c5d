-- Sorted feed append / prepend / publish before or after an item.
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, mode ('end' | 'begin' |
--       'before' | 'after'), rel, item
-- Replies the new id.
local K, J, feed = fbfeed(1, 1)
return fbsinsert(K, feed, ARGV[4], ARGV[5], ARGV[6], J)
