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

	// prefixJobRecord is feedbridge's own key (not Thoonk's): the status
	// record of a job the bridge submitted, kept with a TTL.
	prefixJobRecord = "feedbridge.job:"
)

// keys holds every key name of one feed, built once per handle.
type keys struct {
	config, ids, items, publishes, idincr            string
	published, claimed, stalled, cancelled, finishes string
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
	}
}

// all lists every key a feed of any type can own, for deletion.
func (k keys) all() []string {
	return []string{k.config, k.ids, k.items, k.publishes, k.idincr,
		k.published, k.claimed, k.stalled, k.cancelled, k.finishes}
}

// jobRecordKey is the key of a bridge-submitted job's status record.
func jobRecordKey(queue, id string) string { return prefixJobRecord + queue + ":" + id }
