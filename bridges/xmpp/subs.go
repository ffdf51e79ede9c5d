package xmpp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// keyPrefix starts every Redis key the adapter owns.
const keyPrefix = "feedbridge.xmpp."

// subscription is one subscriber of one feed's node.
type subscription struct {
	Feed string `json:"-"`
	// JID is the address notifications go to: the bare JID, or a full
	// JID of the same account when the subscriber asked for one.
	JID   string    `json:"-"`
	SubID string    `json:"subid"`
	Since time.Time `json:"since"`
	// Quiet is set when the subscriber turned notifications off
	// (subscription option pubsub#deliver false).
	Quiet bool `json:"quiet,omitempty"`
}

// registry holds the subscriptions: in Redis (one hash per component,
// field "feed NUL jid", value JSON), which is the truth, and in memory for
// fan-out. Changes go to Redis first; reload rebuilds memory from Redis.
type registry struct {
	rdb redis.UniversalClient
	key string

	// write serializes changes and reloads, so that a reload never
	// drops a change made while it read Redis.
	write sync.Mutex

	mu     sync.RWMutex
	byFeed map[string]map[string]subscription // feed -> jid -> subscription
	// accounts counts the subscriptions of each account (bare JID).
	accounts map[string]int
}

func newRegistry(rdb redis.UniversalClient, component string) *registry {
	return &registry{rdb: rdb, key: keyPrefix + "subscriptions:" + component,
		byFeed: map[string]map[string]subscription{}, accounts: map[string]int{}}
}

func field(feed, jid string) string { return feed + "\x00" + jid }

// load replaces the in-memory subscriptions with Redis' (HSCAN, so a large
// hash does not block Redis).
func (r *registry) load(ctx context.Context) error {
	r.write.Lock()
	defer r.write.Unlock()
	fresh := map[string]map[string]subscription{}
	accounts := map[string]int{}
	iter := r.rdb.HScan(ctx, r.key, 0, "", 1000).Iterator()
	for iter.Next(ctx) {
		f := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		feed, j, ok := strings.Cut(f, "\x00")
		var s subscription
		if !ok || json.Unmarshal([]byte(iter.Val()), &s) != nil {
			continue // not written by this adapter: left alone
		}
		s.Feed, s.JID = feed, j
		if fresh[feed] == nil {
			fresh[feed] = map[string]subscription{}
		}
		if _, dup := fresh[feed][j]; !dup {
			accounts[bareOf(j)]++
		}
		fresh[feed][j] = s
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("load subscriptions: %w", err)
	}
	r.mu.Lock()
	r.byFeed, r.accounts = fresh, accounts
	r.mu.Unlock()
	return nil
}

// add subscribes jid to feed, or returns its existing subscription;
// quiet, when not nil, sets whether notifications are off (pubsub#deliver).
func (r *registry) add(ctx context.Context, feed, jid string, quiet *bool) (subscription, error) {
	r.write.Lock()
	defer r.write.Unlock()
	s, ok := r.get(feed, jid)
	if ok && (quiet == nil || *quiet == s.Quiet) {
		return s, nil
	}
	if !ok {
		s = subscription{Feed: feed, JID: jid, SubID: thoonk.NewID(), Since: time.Now().UTC()}
	}
	if quiet != nil {
		s.Quiet = *quiet
	}
	v, _ := json.Marshal(s) // cannot fail: plain fields
	if err := r.rdb.HSet(ctx, r.key, field(feed, jid), v).Err(); err != nil {
		return subscription{}, fmt.Errorf("store subscription: %w", err)
	}
	r.mu.Lock()
	if r.byFeed[feed] == nil {
		r.byFeed[feed] = map[string]subscription{}
	}
	r.byFeed[feed][jid] = s
	if !ok {
		r.accounts[bareOf(jid)]++
	}
	r.mu.Unlock()
	return s, nil
}

// remove drops the given subscriptions of feed (every one when jids is empty).
func (r *registry) remove(ctx context.Context, feed string, jids ...string) error {
	r.write.Lock()
	defer r.write.Unlock()
	if len(jids) == 0 {
		r.mu.RLock()
		jids = slices.Collect(maps.Keys(r.byFeed[feed]))
		r.mu.RUnlock()
	}
	if len(jids) == 0 {
		return nil
	}
	fields := make([]string, len(jids))
	for i, j := range jids {
		fields[i] = field(feed, j)
	}
	if err := r.rdb.HDel(ctx, r.key, fields...).Err(); err != nil {
		return fmt.Errorf("remove subscription: %w", err)
	}
	r.mu.Lock()
	for _, j := range jids {
		if _, ok := r.byFeed[feed][j]; !ok {
			continue
		}
		delete(r.byFeed[feed], j)
		if r.accounts[bareOf(j)]--; r.accounts[bareOf(j)] <= 0 {
			delete(r.accounts, bareOf(j))
		}
	}
	if len(r.byFeed[feed]) == 0 {
		delete(r.byFeed, feed)
	}
	r.mu.Unlock()
	return nil
}

func (r *registry) get(feed, jid string) (subscription, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.byFeed[feed][jid]
	return s, ok
}

// subscribers returns the JIDs subscribed to feed.
func (r *registry) subscribers(feed string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Collect(maps.Keys(r.byFeed[feed]))
}

// deliverable returns the JIDs subscribed to feed that want notifications.
func (r *registry) deliverable(feed string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byFeed[feed]))
	for j, s := range r.byFeed[feed] {
		if !s.Quiet {
			out = append(out, j)
		}
	}
	return out
}

// feeds returns the feeds that have subscribers.
func (r *registry) feeds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Collect(maps.Keys(r.byFeed))
}

// countOf returns the number of subscriptions of the account bare.
func (r *registry) countOf(bare string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.accounts[bare]
}

// count returns the number of subscriptions.
func (r *registry) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, subs := range r.byFeed {
		n += len(subs)
	}
	return n
}

// of returns the subscriptions whose JID belongs to the account bare,
// sorted by feed then JID.
func (r *registry) of(bare string) []subscription {
	r.mu.RLock()
	var out []subscription
	for _, subs := range r.byFeed {
		for j, s := range subs {
			if bareOf(j) == bare {
				out = append(out, s)
			}
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b subscription) int {
		if c := strings.Compare(a.Feed, b.Feed); c != 0 {
			return c
		}
		return strings.Compare(a.JID, b.JID)
	})
	return out
}

// bareOf strips the resource of a JID already validated and normalized.
func bareOf(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}
