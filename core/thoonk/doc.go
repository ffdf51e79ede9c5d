// Package thoonk speaks the Thoonk schema on Redis, byte for byte as the
// reference libraries (thoonk.py, thoonk.js 0.5) do, so that any process in
// any language can share the same feeds and job queues. It imports nothing
// of feedbridge: a Go program that publishes to a feed, follows its events
// or runs a worker needs only this package and go-redis.
//
// # Keys and channels
//
// Every feed is named in the set "feeds" and configured in the hash
// "feed.config:NAME" (field type: feed, sorted_feed, queue or job; a
// config without it is a plain feed). Its other keys carry the name
// verbatim after a prefix:
//
//	feed.ids:NAME        zset (feed: id -> publish time) or list (sorted_feed, queue, job)
//	feed.items:NAME      hash id -> item (opaque bytes)
//	feed.publishes:NAME  counter of publishes and edits (jobs: of puts)
//	feed.idincr:NAME     sorted feeds: the last numeric id given
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
// "job.finish:NAME" carries ID\x00RESULT. A plain feed announces a new id
// on feed.publish and a known one on feed.edit; a sorted feed announces
// inserts and edits alike on feed.publish, an insert followed by
// feed.position.
//
// A plain feed's scores are publish times on Redis' clock: milliseconds,
// as thoonk.js and feedbridge write them, or seconds as thoonk.py writes
// them (scores below 1e11 are seconds). A publish keeps the feed's
// existing unit: on a feed holding any item scored in seconds, or whose
// config says score_unit=s, it writes seconds with the milliseconds as
// decimals. Reads, pages and max_length trimming order a feed holding both
// units by real time.
//
// # Operations
//
// Each multi-step operation is one Lua script (in lua/, documented in
// lua/README.md so that other languages can load the same scripts), whose
// keys all carry the feed's name: on Redis Cluster a feed named with a hash
// tag ("{team}:news") keeps every key in one slot, and the Store refuses
// feed names without one. [Store] opens handles: [Store.Feed] (plain
// feeds: publish, edit, retract, max_length trimming), [Store.Sorted]
// (append, prepend, insert before or after, move), [Store.Queue] (put,
// take once) and [Store.Jobs] (the job life cycle); [Store.Page] reads a
// feed in display order (plain feeds newest first) with cursors that
// survive the removal of their item.
//
// # Job life cycle
//
// A job is put ([JobFeed.Put]: its id pushed on feed.ids, its payload in
// feed.items) and is then available; a worker claims it ([JobFeed.Get]:
// BRPOP, then feed.claimed) and it is in flight. From there it is
// finished, with a result published on job.finish ([JobFeed.FinishWithResult])
// or without one ([JobFeed.Finish]); cancelled, to run again at once as in
// the reference libraries ([JobFeed.Cancel]); failed, to run again after
// a delay ([JobFeed.Fail]); or stalled for a person ([JobFeed.Stall]),
// who retries ([JobFeed.Retry]) or retracts ([JobFeed.Retract]) it. The
// reference libraries leave timeouts and retry limits to the application;
// here they are the job feed's config fields:
//
//	job_timeout_ms            a claim older than this counts as a failure (default 60000)
//	job_max_retries           failures a job survives; one more stalls it (default 5; -1: no limit)
//	job_retry_backoff_ms      delay before a failed job's first retry (default 2000; 0: at once)
//	job_retry_backoff_max_ms  the longest delay (default 60000)
//
// A failed job's delay doubles with each failure up to the maximum and is
// drawn from its upper half (jitter): with the defaults a job that keeps
// failing runs 6 times over 31 to 62 seconds, long enough to outlast a
// Redis failover, then stalls. [Maintenance] (one pass per job feed every
// few seconds, safe in any number of processes) fails jobs claimed longer
// than the timeout, stalls jobs other libraries cancelled too often, and
// puts back jobs lost between states.
//
// # Exactly once
//
// [Store.ApplyJob] applies a job's change to a plain or sorted feed so that
// it happens once however often the job runs: where the feed and the job
// feed share a Redis slot, the change, the job's finish with its result
// and the claim of the next job are one script; where they cannot (Redis
// Cluster, different hash tags), the change is written with a marker that
// a run after a crash finds, and it finishes the job with the first
// outcome. A change may carry the item revision it was based on
// ([Change].ExpectRev): it is made only while the item is still at that
// revision, else a [ConflictError] names the current one. With
// [StoreOptions].ReplicaAcks, puts and applied changes are confirmed only
// once that many replicas hold them (WAIT), so that they survive a
// failover.
//
// # The journal
//
// A [Journal] is feedbridge's record of every change to a plain or sorted
// feed: a Redis stream whose entry ids ("1733300000123-0", increasing)
// are revisions. Changes this package makes are journaled in the same
// script as the change ([StoreOptions].Journal); changes of other Thoonk
// writers are journaled from their events ([Store.Observe]) and by
// reconciliation after a gap ([Store.Reconcile]). [Journal.Read] replays
// the changes after a revision, or fails with a [GapError] when the
// journal no longer holds them. Items carry their revision ([Item].Rev).
//
// # Events
//
// A [Listener] holds one pubsub connection, pattern-subscribed to every
// feed's channels, and fans typed [Event] values out to [Subscription]
// values with bounded queues. A consumer that overflows, or that followed
// while the connection was down, receives [EventResync] and must reload
// from Redis (or read the journal): it never sees a silent gap. A
// subscription made with [SubscribeOptions].Journal receives the journal's
// announcements instead of the schema's item events, with [Event].Rev set.
// [Listener.Expect] waits for one job's result; a job finished without
// one ends the wait within a second.
//
// # feedbridge's own keys
//
// They are prefixed "feedbridge." and never collide with the schema's;
// each one that belongs to a feed carries the feed's name, so that it
// shares the feed's Cluster slot. Other Thoonk libraries neither read nor
// need them. This package writes:
//
//	feedbridge.job:QUEUE:ID          hash, a submitted job's status record: submitted_at,
//	                                 submitter, fingerprint, result, finished_at, failures,
//	                                 last_error, failed_at, stalled_at; expires (PutOptions.RecordTTL)
//	feedbridge.delayed:QUEUE         zset id -> due time (ms): failed jobs waiting out their
//	                                 backoff; a claim or a maintenance pass makes them available
//	feedbridge.applied:FEED:JOB      string "CODE\nREV\nID": the outcome of a job's change
//	                                 whose job feed is in another slot; deleted once the job
//	                                 is finished, else expires after an hour
//	feedbridge.journal:FEED          stream, the journal: entries with fields t (publish, edit,
//	                                 retract, position, delete), id, item (or sum: the first
//	                                 16 hex digits of the content's SHA-1, for large items), pos
//	feedbridge.revs:FEED             hash id -> "REV SUM[ POSITION]": each item's revision
//	feedbridge.journal.meta:FEED     hash: born (the first entry's id), floor (the last
//	                                 entry trimmed); a resume before floor is a gap
//
// and announces each journal entry on the channel feedbridge.journal:FEED
// as REV\x00TYPE\x00ID\x00POSITION\x00KIND\x00ITEM, where KIND is "i" (ITEM
// is the content), "s" (ITEM is the content sum: read the feed) or empty
// (no item). A deleted feed's journal gets a delete entry and is kept for
// the journal's maximum age. The bridge's runtime (package core) adds the
// fleet's leases, feedbridge.lease:{H} ("TOKEN OWNER NAME", expiring; H
// hashes the lease's name) and feedbridge.lease.fence:{H} (the last
// fencing token given), announcing released
// leases on the channel feedbridge.lease; adapters keep their own keys
// (feedbridge.irc.*, feedbridge.xmpp.*, feedbridge.atom.*,
// feedbridge.{websub}* and feedbridge.websub.seen:*), each documented with
// its adapter.
package thoonk
