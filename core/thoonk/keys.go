package thoonk

// FeedType is the value of the `type` field in a feed's config hash.
type FeedType string

// The feed types of the Thoonk schema.
const (
	TypeFeed   FeedType = "feed"
	TypeSorted FeedType = "sorted_feed"
	TypeQueue  FeedType = "queue"
	TypeJob    FeedType = "job"
)

// Valid reports whether t is one of the schema's feed types.
func (t FeedType) Valid() bool {
	switch t {
	case TypeFeed, TypeSorted, TypeQueue, TypeJob:
		return true
	}
	return false
}

// Registry keys and channels shared by every feed.
const (
	keyFeeds       = "feeds"
	channelNewFeed = "newfeed"
	channelDelFeed = "delfeed"
	channelConf    = "conffeed"
)

// Per-feed key and channel prefixes; the feed name follows verbatim.
const (
	prefixConfig    = "feed.config:"
	prefixIDs       = "feed.ids:"
	prefixItems     = "feed.items:"
	prefixPublishes = "feed.publishes:"
	prefixIDIncr    = "feed.idincr:"
	prefixPublished = "feed.published:"
	prefixClaimed   = "feed.claimed:"
	prefixStalled   = "feed.stalled:"
	prefixCancelled = "feed.cancelled:"
	prefixFinishes  = "feed.finishes:"

	prefixChanPublish  = "feed.publish:"
	prefixChanEdit     = "feed.edit:"
	prefixChanRetract  = "feed.retract:"
	prefixChanPosition = "feed.position:"
	prefixChanFinish   = "job.finish:"

	// feedbridge's own keys (not Thoonk's), each carrying the feed's name
	// so that it shares the feed's Redis Cluster slot.

	// prefixJobRecord: the status record of a job the bridge submitted,
	// kept with a TTL.
	prefixJobRecord = "feedbridge.job:"
	// prefixDelayed: a job feed's retries waiting out their backoff
	// (zset id -> due time in ms).
	prefixDelayed = "feedbridge.delayed:"
	// prefixApplied: the outcome of an action job applied to a feed, kept
	// until its job is finished (see JobFeed.Apply).
	prefixApplied = "feedbridge.applied:"
	// prefixJournal: a feed's journal (stream).
	prefixJournal = "feedbridge.journal:"
	// prefixRevs: a feed's item revisions (hash id -> "entry-id sum[ pos]").
	prefixRevs = "feedbridge.revs:"
	// prefixJournalMeta: a feed's journal bounds (hash: born, floor).
	prefixJournalMeta = "feedbridge.journal.meta:"
	// channelJournal prefixes the channel announcing a feed's journal entries.
	channelJournal = "feedbridge.journal:"
)

// keys holds every key name of one feed, built once per handle.
type keys struct {
	config, ids, items, publishes, idincr            string
	published, claimed, stalled, cancelled, finishes string
	delayed, journal, revs, jmeta                    string
}

func feedKeys(feed string) keys {
	return keys{
		config:    prefixConfig + feed,
		ids:       prefixIDs + feed,
		items:     prefixItems + feed,
		publishes: prefixPublishes + feed,
		idincr:    prefixIDIncr + feed,
		published: prefixPublished + feed,
		claimed:   prefixClaimed + feed,
		stalled:   prefixStalled + feed,
		cancelled: prefixCancelled + feed,
		finishes:  prefixFinishes + feed,
		delayed:   prefixDelayed + feed,
		journal:   prefixJournal + feed,
		revs:      prefixRevs + feed,
		jmeta:     prefixJournalMeta + feed,
	}
}

// feed returns the keys a changing script of a plain or sorted feed takes
// (lua/prelude.lua fbfeed).
func (k keys) feed() []string {
	return []string{k.config, k.ids, k.items, k.publishes, k.idincr, k.journal, k.revs, k.jmeta}
}

// job returns the keys a job script takes (lua/prelude.lua fbjob), with
// the status record of job id ("" for none).
func (k keys) job(queue, id string) []string {
	rec := ""
	if id != "" {
		rec = jobRecordKey(queue, id)
	} else {
		rec = prefixJobRecord + queue + ":"
	}
	return []string{k.config, k.ids, k.items, k.published, k.claimed, k.stalled, k.cancelled, k.finishes,
		k.publishes, k.delayed, rec}
}

// all lists every schema key a feed of any type can own, and the job
// retries feedbridge keeps, for deletion.
func (k keys) all() []string {
	return []string{k.config, k.ids, k.items, k.publishes, k.idincr,
		k.published, k.claimed, k.stalled, k.cancelled, k.finishes, k.delayed}
}

// appliedKey is the key remembering an action job's outcome on its feed.
func appliedKey(feed, job string) string { return prefixApplied + feed + ":" + job }

// jobRecordKey is the key of a bridge-submitted job's status record.
func jobRecordKey(queue, id string) string { return prefixJobRecord + queue + ":" + id }
