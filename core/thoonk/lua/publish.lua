-- Plain feed publish (new id) or edit (existing id), with max_length trimming.
-- KEYS: feed keys (fbfeed)
-- ARGV: feed, journal max, journal max item, id, item, mode ('edit' = only
--       when the id exists, 'create' = only when it does not)
-- Replies 1 for a new id, 0 for an edit.
local K, J, feed = fbfeed(1, 1)
return fbpublish(K, feed, ARGV[4], ARGV[5], ARGV[6], J)
