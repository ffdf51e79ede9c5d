-- Sorted feed move of an item to a new position.
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, id, mode ('end' | 'begin' |
--       'before' | 'after'), rel
local K, J, feed = fbfeed(1, 1)
return fbsmove(K, feed, ARGV[4], ARGV[5], ARGV[6], J)
