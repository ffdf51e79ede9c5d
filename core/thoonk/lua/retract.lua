-- Plain feed retract.
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, id
local K, J, feed = fbfeed(1, 1)
return fbretract(K, feed, ARGV[4], J)
