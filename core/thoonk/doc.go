// Package thoonk speaks the Thoonk schema on Redis, byte for byte as the
// reference libraries (thoonk.py, thoonk.js 0.5) do, so that any process in
// any language can share the same feeds and job queues. It imports nothing
// of feedbridge: a Go program that publishes to a feed, follows its events
// or runs a worker needs only this package and go-redis.
//
// # Keys and channels
//
// Every feed is named in the set "feeds" and configured in the hash
// "feed.config:NAME" (field type: feed, sorted_feed, queue or job). Its
// other keys carry the name verbatim after a prefix:
//
//	feed.ids:NAME        zset (feed: id -> publish time) or list (sorted_feed, queue, job)
//	feed.items:NAME      hash id -> item (opaque bytes)
//	feed.publishes:NAME  counter of publishes and edits (jobs: of puts)
//	feed.idincr:NAME     sorted feeds: the next numeric id
//	feed.published:NAME  jobs: zset id -> time it became available
//	feed.claimed:NAME    jobs: zset id -> time a worker claimed it
//	feed.stalled:NAME    jobs: set of ids taken out of circulation
//	feed.cancelled:NAME  jobs: hash id -> times cancelled
//	feed.finishes:NAME   jobs: counter of finishes
//
// Changes are announced on pubsub: "newfeed", "delfeed" and "conffeed"
// carry NAME\x00INSTANCE; "feed.publish:NAME" and "feed.edit:NAME" carry
// ID\x00ITEM; "feed.retract:NAME" carries ID; "feed.position:NAME" carries
// ID\x00POSITION (":end", "begin:", ":REL" before REL, "REL:" after REL);
// "job.finish:NAME" carries ID\x00RESULT.
//
// # Operations
//
// Each multi-step operation is one Lua script (in lua/, documented in
// lua/README.md so other languages can load the same scripts), whose keys
// all carry the feed's name: on Redis Cluster a feed named with a hash tag
// ("{team}:news") keeps every key in one slot. [Store] opens handles:
// [Store.Feed] (plain feeds: publish, edit, retract, max_length trimming),
// [Store.Sorted] (append, prepend, insert before or after, move),
// [Store.Queue] (put, take once) and [Store.Jobs] (the job life cycle).
//
// # Job life cycle
//
// A job is put (available), claimed by one worker ([JobFeed.Get]), then
// finished with or without a result ([JobFeed.FinishWithResult]), cancelled
// to run again ([JobFeed.Cancel]) or stalled for a person
// ([JobFeed.Stall], later [JobFeed.Retry]). The reference libraries leave
// timeouts and retry limits to the application; here they are the job
// feed's config fields job_timeout_ms and job_max_retries, enforced by
// [Maintenance]: jobs claimed too long are cancelled, jobs cancelled too
// often are stalled, jobs lost between states are put back.
//
// # Events
//
// A [Listener] holds one pubsub connection, pattern-subscribed to every
// feed's channels, and fans typed [Event] values out to [Subscription]
// values with bounded queues. A consumer that overflows, or that followed
// while the connection was down, receives [EventResync] and must reload
// from Redis: it never sees a silent gap. [Listener.Expect] waits for one
// job's result.
//
// feedbridge's own keys are prefixed "feedbridge." and never collide with
// the schema's: a job's status record ("feedbridge.job:QUEUE:ID", kept for
// a while after the job finished) is the only one this package writes.
package thoonk
