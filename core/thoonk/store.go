package thoonk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store speaks the Thoonk schema on one Redis deployment (single node,
// Sentinel or Cluster). It is safe for concurrent use; concurrent calls are
// pipelined onto shared connections automatically.
type Store struct {
	rdb      redis.UniversalClient // blocking commands and pubsub
	cmd      redis.UniversalClient // autopipelined face for everything else
	instance string
	cluster  bool
	journal  JournalOptions
	jmax     string // journal bounds as script arguments
	jitem    string

	acks          int
	ackTimeout    time.Duration
	replicaCounts replicaCache
	storeCounters
}

// StoreOptions tunes a Store; the zero value is ready to use.
type StoreOptions struct {
	// Instance identifies this process in newfeed/delfeed/conffeed payloads;
	// empty means a random id.
	Instance string
	// Journal, when MaxEvents is set, journals every change this store
	// makes to a plain or sorted feed (see Journal).
	Journal JournalOptions
	// ReplicaAcks is how many replicas must have a job put or an action
	// applied before it is confirmed (WAIT on the master's connection), so
	// that it survives a failover; masters with fewer replicas connected
	// wait for those they have. 0 confirms at once.
	ReplicaAcks int
	// ReplicaTimeout bounds that wait (default 1s); a change not
	// replicated in time is still confirmed, and counted.
	ReplicaTimeout time.Duration
}

// JournalOptions bounds the per-feed journals.
type JournalOptions struct {
	// MaxEvents is how many entries a feed's journal keeps (a few dozen
	// more between trims); 0 turns journaling off.
	MaxEvents int
	// MaxItemBytes is the largest item an entry holds; a larger item is
	// journaled by its content sum, and readers read the feed for it.
	MaxItemBytes int
	// MaxAge is how long entries are kept at most (see Store.TrimJournal),
	// and how long a deleted feed's journal is kept; 0 means no age bound.
	MaxAge time.Duration
}

// NewStore wraps a go-redis universal client. The caller keeps ownership of
// rdb and closes it after the Store is no longer used.
func NewStore(rdb redis.UniversalClient, opts StoreOptions) (*Store, error) {
	// Several batches in flight keep Redis busy while replies travel back;
	// each caller still waits for its own command, so a goroutine's
	// commands stay in order (only unrelated callers' may interleave).
	ap, err := rdb.AutoPipelineWithOptions(&redis.AutoPipelineOptions{MaxConcurrentBatches: 4, Unordered: true})
	if err != nil {
		return nil, fmt.Errorf("redis autopipeline: %w", err)
	}
	s := &Store{rdb: rdb, cmd: ap, instance: opts.Instance, journal: opts.Journal,
		jmax: strconv.Itoa(max(opts.Journal.MaxEvents, 0)), jitem: strconv.Itoa(max(opts.Journal.MaxItemBytes, 0))}
	if s.instance == "" {
		s.instance = NewID()
	}
	s.acks, s.ackTimeout = opts.ReplicaAcks, opts.ReplicaTimeout
	if s.ackTimeout <= 0 {
		s.ackTimeout = time.Second
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		s.cluster = true
		cc.AddHook(clusterFollower{s: s, cc: cc})
	}
	return s, nil
}

// Client returns the underlying go-redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Instance returns this process's instance id.
func (s *Store) Instance() string { return s.instance }

// Ping checks that Redis answers and returns the round-trip time.
func (s *Store) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return 0, fmt.Errorf("redis ping: %w", err)
	}
	return time.Since(start), nil
}

// run executes a script on the pipelined face.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	return sc.Run(ctx, s.cmd, keys, args...)
}

// Create creates a feed of the given type with extra config fields
// (title, max_length, ...): SADD to the registry, write the config hash,
// publish newfeed then conffeed. It fails with ErrFeedExists when the
// name is taken.
func (s *Store) Create(ctx context.Context, feed string, typ FeedType, config map[string]string) error {
	if err := s.validFeed(feed); err != nil {
		return err
	}
	if !typ.Valid() {
		return fmt.Errorf("create %q: type %q is not one of feed, sorted_feed, queue, job: %w", feed, typ, ErrInvalid)
	}
	added, err := s.cmd.SAdd(ctx, keyFeeds, feed).Result()
	if err != nil {
		return fmt.Errorf("create %q: %w", feed, err)
	}
	if added == 0 {
		return fmt.Errorf("create %q: %w", feed, ErrFeedExists)
	}
	cfg := maps.Clone(config)
	if cfg == nil {
		cfg = map[string]string{}
	}
	cfg["type"] = string(typ)
	if err := s.writeConfig(ctx, feed, cfg, true); err != nil {
		// undo the registration so that a retry can create the feed
		_ = s.cmd.SRem(context.WithoutCancel(ctx), keyFeeds, feed).Err()
		return fmt.Errorf("create %q: %w", feed, err)
	}
	return nil
}

// SetConfig merges fields into a feed's config and publishes conffeed. The
// type field cannot be changed.
func (s *Store) SetConfig(ctx context.Context, feed string, config map[string]string) error {
	if err := s.validFeed(feed); err != nil {
		return err
	}
	typ, err := s.Type(ctx, feed)
	if err != nil {
		return err
	}
	if t, ok := config["type"]; ok && FeedType(t) != typ {
		return fmt.Errorf("set config %q: the type cannot change from %s to %s: %w", feed, typ, t, ErrInvalid)
	}
	return s.writeConfig(ctx, feed, config, false)
}

func (s *Store) writeConfig(ctx context.Context, feed string, cfg map[string]string, isNew bool) error {
	args := make([]any, 0, 3+2*len(cfg))
	args = append(args, feed, s.instance, boolArg(isNew))
	for _, k := range slices.Sorted(maps.Keys(cfg)) {
		args = append(args, k, cfg[k])
	}
	k := feedKeys(feed)
	if err := s.run(ctx, scripts.configSet, []string{k.config, k.journal, k.jmeta}, args...).Err(); err != nil {
		return scriptError(err, feed, "", "set config")
	}
	return nil
}

// Config returns a feed's config hash.
func (s *Store) Config(ctx context.Context, feed string) (map[string]string, error) {
	if err := s.validFeed(feed); err != nil {
		return nil, err
	}
	cfg, err := s.cmd.HGetAll(ctx, prefixConfig+feed).Result()
	if err != nil {
		return nil, fmt.Errorf("config %q: %w", feed, err)
	}
	if len(cfg) == 0 {
		return nil, fmt.Errorf("config %q: %w", feed, ErrFeedNotFound)
	}
	if cfg["type"] == "" {
		cfg["type"] = string(TypeFeed)
	}
	return cfg, nil
}

// Delete removes a feed and every key it owns, then publishes delfeed. On a
// single node or Sentinel this is one atomic script; on Cluster the registry
// lives in another slot, so the registry removal comes first and decides
// which caller deletes.
func (s *Store) Delete(ctx context.Context, feed string) error {
	if err := s.validFeed(feed); err != nil {
		return err
	}
	fk := feedKeys(feed)
	k := fk.all()
	check := "1"
	if s.cluster {
		n, err := s.cmd.SRem(ctx, keyFeeds, feed).Result()
		if err != nil {
			return fmt.Errorf("delete %q: %w", feed, err)
		}
		if n == 0 {
			return fmt.Errorf("delete %q: %w", feed, ErrFeedNotFound)
		}
		check = "0"
	} else {
		k = append([]string{keyFeeds}, k...)
	}
	k = append(k, fk.journal, fk.revs, fk.jmeta)
	if err := s.run(ctx, scripts.del, k, feed, s.instance, check, s.jmax, s.jitem, s.journal.MaxAge.Milliseconds()).Err(); err != nil {
		return scriptError(err, feed, "", "delete")
	}
	return nil
}

// Feeds returns the names of every feed in the registry, sorted.
func (s *Store) Feeds(ctx context.Context) ([]string, error) {
	names, err := s.cmd.SMembers(ctx, keyFeeds).Result()
	if err != nil {
		return nil, fmt.Errorf("list feeds: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// Exists reports whether the feed is in the registry.
func (s *Store) Exists(ctx context.Context, feed string) (bool, error) {
	if err := s.validFeed(feed); err != nil {
		return false, err
	}
	ok, err := s.cmd.SIsMember(ctx, keyFeeds, feed).Result()
	if err != nil {
		return false, fmt.Errorf("feed exists %q: %w", feed, err)
	}
	return ok, nil
}

// Type returns a feed's type from its config (a config without a type
// field means a plain feed); a type the schema does not know is an error
// wrapping ErrMalformed.
func (s *Store) Type(ctx context.Context, feed string) (FeedType, error) {
	if err := s.validFeed(feed); err != nil {
		return "", err
	}
	t, err := s.run(ctx, scripts.read, readKeys(feed), "type").Text()
	if err != nil {
		return "", scriptError(err, feed, "", "feed type")
	}
	if !FeedType(t).Valid() {
		return "", unknownType(feed, t)
	}
	return FeedType(t), nil
}

// Item returns one item of a plain or sorted feed (see Feed.Item).
func (s *Store) Item(ctx context.Context, feed, id string) (Item, error) {
	f := newItems(s, feed)
	return f.Item(ctx, id)
}

// ItemOf reads one item of a feed whose type the caller knows already (a
// feed's type never changes while it exists) with its revision, in one
// script call that concurrent callers' calls share round trips with (the
// store's autopipelining). Its index in display order is not read (Index
// is -1). A missing item, or a feed that is gone, is an error wrapping
// ErrItemNotFound; when the feed turns out to be of another type (deleted
// and created again meanwhile) the error wraps ErrWrongType, and Item
// tells the truth.
func (s *Store) ItemOf(ctx context.Context, feed string, typ FeedType, id string) (Item, error) {
	if err := s.validFeed(feed); err != nil {
		return Item{}, err
	}
	if err := ValidateID(id); err != nil {
		return Item{}, err
	}
	if typ != TypeFeed && typ != TypeSorted {
		return Item{}, &WrongTypeError{Feed: feed, Want: TypeItems, Got: typ}
	}
	vals, err := s.run(ctx, scripts.read, readKeys(feed), "itemof", id).Slice()
	if err != nil {
		return Item{}, scriptError(err, feed, typ, "get "+strconv.Quote(id))
	}
	if len(vals) != 4 {
		return Item{}, fmt.Errorf("get %q in %q: short reply", id, feed)
	}
	if got := FeedType(stringOf(vals[3])); got != typ {
		return Item{}, &WrongTypeError{Feed: feed, Want: typ, Got: got}
	}
	it := Item{ID: id, Data: bytesOf(vals[0]), Index: -1, Rev: stringOf(vals[2])}
	if sc := stringOf(vals[1]); sc != "" {
		f, err := parseScore(sc)
		if err != nil {
			return Item{}, fmt.Errorf("get %q in %q: %w", id, feed, err)
		}
		it.Published, it.hint = ScoreTime(f), sc
	}
	return it, nil
}

// Count returns the number of items of any feed type (for queues and job
// feeds: the jobs not yet taken or finished).
func (s *Store) Count(ctx context.Context, feed string) (int64, error) {
	if err := s.validFeed(feed); err != nil {
		return 0, err
	}
	n, err := s.run(ctx, scripts.read, readKeys(feed), "count").Int64()
	if err != nil {
		return 0, scriptError(err, feed, "", "count")
	}
	return n, nil
}

func readKeys(feed string) []string {
	return []string{prefixConfig + feed, prefixIDs + feed, prefixItems + feed, prefixRevs + feed}
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ScoreTime converts a publish-time score to a time. The schema's scores are
// milliseconds; scores below 1e11 (before 1973 in ms) are taken as seconds,
// as some older Thoonk writers stored them.
func ScoreTime(score float64) time.Time {
	if score > 0 && score < 1e11 {
		return time.UnixMilli(int64(score * 1000))
	}
	return time.UnixMilli(int64(score))
}

func parseScore(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("score %q: %w", s, err)
	}
	return f, nil
}

// isNil reports a nil reply.
func isNil(err error) bool { return errors.Is(err, redis.Nil) }

// isNoScript reports that a script is not loaded on the server.
func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// FeedInfo describes a feed for listings.
type FeedInfo struct {
	Name   string
	Type   FeedType
	Config map[string]string
	// Count is the number of items (for queues and job feeds: jobs not yet
	// taken or finished).
	Count int64
	// Err, when set, says why the feed is malformed (it wraps
	// ErrMalformed); Type, Config and Count are then not to be trusted.
	Err error
}

// Describe returns type, config and item count of each feed, in one
// pipelined round trip; feeds that do not exist are left out. A malformed
// feed (a key of another Redis type than the schema's, a config naming no
// known type, an invalid name) is described with Err set and never fails
// the others; an error is returned only when Redis itself fails.
func (s *Store) Describe(ctx context.Context, feeds ...string) ([]FeedInfo, error) {
	type reads struct {
		cfg                *redis.MapStringStringCmd
		idsType, itemsType *redis.StatusCmd
		zcard, hlen        *redis.IntCmd
		invalid            error
	}
	pipe := s.rdb.Pipeline()
	rs := make([]reads, len(feeds))
	for i, f := range feeds {
		if err := s.validFeed(f); err != nil {
			rs[i].invalid = err
			continue
		}
		rs[i] = reads{
			cfg:       pipe.HGetAll(ctx, prefixConfig+f),
			idsType:   pipe.Type(ctx, prefixIDs+f),
			itemsType: pipe.Type(ctx, prefixItems+f),
			zcard:     pipe.ZCard(ctx, prefixIDs+f), // a WRONGTYPE error when ids is a list: unused then
			hlen:      pipe.HLen(ctx, prefixItems+f),
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // each command's error is checked below
	}
	out := make([]FeedInfo, 0, len(feeds))
	for i, f := range feeds {
		r := rs[i]
		if r.invalid != nil {
			out = append(out, FeedInfo{Name: f, Err: malformed(f, "its name is not valid: %v", r.invalid)})
			continue
		}
		cfg, err := r.cfg.Result()
		switch {
		case isWrongType(err):
			out = append(out, FeedInfo{Name: f, Err: malformed(f, "%s%s is not a hash", prefixConfig, f)})
			continue
		case err != nil:
			return nil, fmt.Errorf("describe %q: %w", f, err)
		case len(cfg) == 0:
			continue
		}
		info := FeedInfo{Name: f, Type: FeedType(cfg["type"]), Config: cfg}
		if info.Type == "" {
			info.Type = TypeFeed
			cfg["type"] = string(TypeFeed)
		}
		if err := errors.Join(r.idsType.Err(), r.itemsType.Err()); err != nil {
			return nil, fmt.Errorf("describe %q: %w", f, err)
		}
		info.Err = checkKinds(f, info.Type, r.idsType.Val(), r.itemsType.Val())
		count := r.hlen
		if info.Type == TypeFeed {
			count = r.zcard
		}
		if info.Err == nil {
			if info.Count, err = count.Result(); err != nil {
				return nil, fmt.Errorf("describe %q: %w", f, err)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// checkKinds reports a feed whose type is unknown or whose ids and items
// keys hold other Redis types than the schema's for that type.
func checkKinds(feed string, typ FeedType, ids, items string) error {
	if !typ.Valid() {
		return unknownType(feed, typ)
	}
	want := "list"
	if typ == TypeFeed {
		want = "zset"
	}
	if ids != want && ids != "none" {
		return malformed(feed, "%s%s is a %s, not a %s", prefixIDs, feed, ids, want)
	}
	if items != "hash" && items != "none" {
		return malformed(feed, "%s%s is a %s, not a hash", prefixItems, feed, items)
	}
	return nil
}
