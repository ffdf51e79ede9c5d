package atom

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// The adapter's own Redis keys (not Thoonk's). Both end with the feed's
// name, so a hash-tagged feed keeps them in its Redis Cluster slot.
//
//   - feedbridge.atom.times:[feed] is a hash: "c" is when the feed last
//     changed (created, configured, an item published, edited, moved or
//     retracted; else when it was first rendered), "p:[id]" when an item was
//     first published ("0": unknown), "u:[id]" when it was last published,
//     edited or moved.
//   - feedbridge.atom.deleted:[feed] is a sorted set of retracted item ids
//     scored by retraction time (milliseconds), trimmed to tombstone_ttl
//     and to maxTombstones entries.
const (
	prefixTimes   = "feedbridge.atom.times:"
	prefixDeleted = "feedbridge.atom.deleted:"
)

// maxTombstones bounds the retracted items kept and listed per feed.
const maxTombstones = 500

// refusal is an event Redis refused to record, and why.
type refusal struct {
	ev  thoonk.Event
	err error
}

// recordEvents stores what a batch of events tells about item times and
// tombstones, in one pipelined round trip. One process of a fleet (the
// housekeeper) records them; the writes are idempotent, so a hand-over
// that records an event twice changes nothing. It returns the events to record again,
// with the first error that stopped one of them (a connection failure, or
// a passing server state such as LOADING), and the events Redis refused
// for good (an error reply such as WRONGTYPE, which no retry can fix).
func recordEvents(ctx context.Context, rdb redis.UniversalClient, evs []thoonk.Event, ttl time.Duration) (retry []thoonk.Event, refused []refusal, err error) {
	pipe := rdb.Pipeline()
	cmds := make([][]redis.Cmder, len(evs))
	for i, ev := range evs {
		cmds[i] = queueRecord(ctx, pipe, ev, ttl)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for i, ev := range evs {
		var cerr error
		for _, c := range cmds[i] {
			if cerr = c.Err(); cerr != nil {
				break
			}
		}
		switch {
		case cerr == nil:
		case permanent(cerr):
			refused = append(refused, refusal{ev: ev, err: cerr})
		default:
			retry = append(retry, ev)
			if err == nil {
				err = fmt.Errorf("record %s of %q: %w", ev.Type, ev.Feed, cerr)
			}
		}
	}
	return retry, refused, err
}

// queueRecord queues the writes that record ev and returns them.
func queueRecord(ctx context.Context, pipe redis.Pipeliner, ev thoonk.Event, ttl time.Duration) []redis.Cmder {
	tk, dk := prefixTimes+ev.Feed, prefixDeleted+ev.Feed
	at := ev.At.UnixMilli()
	if t := thoonk.RevTime(ev.Rev); !t.IsZero() {
		at = t.UnixMilli() // when Redis journaled it: the same in every process
	}
	var cmds []redis.Cmder
	add := func(c ...redis.Cmder) { cmds = append(cmds, c...) }
	switch ev.Type {
	case thoonk.EventPublish:
		// the first publish's time, also over the "unknown" a render put
		// there before this was recorded
		add(firstPublish.Eval(ctx, pipe, []string{tk}, "p:"+ev.ID, at), pipe.HSet(ctx, tk, "u:"+ev.ID, at), pipe.ZRem(ctx, dk, ev.ID))
	case thoonk.EventEdit, thoonk.EventPosition:
		add(pipe.HSet(ctx, tk, "u:"+ev.ID, at))
	case thoonk.EventRetract:
		add(pipe.HDel(ctx, tk, "p:"+ev.ID, "u:"+ev.ID))
		if ttl > 0 {
			add(pipe.ZAdd(ctx, dk, redis.Z{Score: float64(at), Member: ev.ID}),
				pipe.ZRemRangeByScore(ctx, dk, "-inf", "("+strconv.FormatInt(at-ttl.Milliseconds(), 10)),
				pipe.ZRemRangeByRank(ctx, dk, 0, -maxTombstones-1),
				pipe.PExpire(ctx, dk, ttl))
		}
	case thoonk.EventCreate, thoonk.EventConfig:
		// only the feed's time, below
	case thoonk.EventDelete:
		return []redis.Cmder{pipe.Del(ctx, tk, dk)}
	default:
		return nil
	}
	// Every change moves the feed's updated time and Last-Modified on,
	// also when its entries carry older times of their own or leave no
	// tombstone.
	return append(cmds, pipe.HSet(ctx, tk, "c", at))
}

// firstPublish sets an item's first-publish time (KEYS[1] the times hash,
// ARGV field and time) unless a time is recorded already; "0" (unknown)
// is not one. (Eval, not EvalSha: it runs in a pipeline, which cannot
// load a script Redis lacks.)
var firstPublish = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or v == '0' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`)

// permanent reports whether err is Redis refusing a command for good: an
// error reply such as WRONGTYPE, as opposed to a connection failure or a
// passing server state (loading, a read-only replica, cluster down, out of
// memory, too many clients, a moved slot), which a retry can get past.
func permanent(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) || errors.Is(err, redis.Nil) {
		return false
	}
	_, moved := redis.IsMovedError(err)
	_, ask := redis.IsAskError(err)
	return !moved && !ask && !redis.IsLoadingError(err) && !redis.IsReadOnlyError(err) && !redis.IsClusterDownError(err) &&
		!redis.IsTryAgainError(err) && !redis.IsMasterDownError(err) && !redis.IsMaxClientsError(err) &&
		!redis.IsNoReplicasError(err) && !redis.IsOOMError(err) && !redis.IsAuthError(err)
}

// readTimesScript returns the feed's time, each item's first-publish and
// last-update times, and the tombstones to list. Items without an update
// time get the current one when ARGV[2] is "1" (sorted feeds keep no
// times: the first time the bridge shows an item stands in, and is kept so
// that every render and every process agree); their publish is marked
// unknown ("0") until the item's publish is recorded (firstPublish: the
// journal tells a sorted feed's publish from its edits).
var readTimesScript = redis.NewScript(`
local now = ARGV[1]
redis.call('HSETNX', KEYS[1], 'c', now)
local times = {redis.call('HGET', KEYS[1], 'c')}
for i = 5, #ARGV do
  local p = redis.call('HGET', KEYS[1], 'p:' .. ARGV[i])
  local u = redis.call('HGET', KEYS[1], 'u:' .. ARGV[i])
  if not u and ARGV[2] == '1' then
    redis.call('HSET', KEYS[1], 'u:' .. ARGV[i], now)
    redis.call('HSETNX', KEYS[1], 'p:' .. ARGV[i], '0')
    u = now
  end
  times[#times + 1] = p or ''
  times[#times + 1] = u or ''
end
local dead = {}
local n = tonumber(ARGV[4])
if n > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
  dead = redis.call('ZREVRANGE', KEYS[2], 0, n - 1, 'WITHSCORES')
end
return {times, dead}
`)

// itemTimes is what the bridge knows about an item's times (zero = unknown).
type itemTimes struct{ published, updated time.Time }

// tombstone is a recently retracted item.
type tombstone struct {
	id   string
	when time.Time
}

// feedTimes is readTimes' answer.
type feedTimes struct {
	feed    time.Time
	items   []itemTimes
	deleted []tombstone
}

// readTimes reads the times of the feed and of the given items, and (when
// ttl > 0) the tombstones younger than ttl, in one round trip.
func readTimes(ctx context.Context, rdb redis.UniversalClient, feed string, ids []string, fill bool, ttl time.Duration, now time.Time) (feedTimes, error) {
	args := make([]any, 0, 4+len(ids))
	fillArg, listed := "0", 0
	if fill {
		fillArg = "1"
	}
	if ttl > 0 {
		listed = maxTombstones
	}
	args = append(args, now.UnixMilli(), fillArg, now.Add(-ttl).UnixMilli(), listed)
	for _, id := range ids {
		args = append(args, id)
	}
	reply, err := readTimesScript.Run(ctx, rdb, []string{prefixTimes + feed, prefixDeleted + feed}, args...).Slice()
	if permanent(err) {
		return feedTimes{}, &thoonk.MalformedError{Feed: feed, Reason: "the adapter's keys " + prefixTimes + feed + " or " + prefixDeleted + feed + ": " + err.Error()}
	}
	if err != nil || len(reply) != 2 {
		return feedTimes{}, fmt.Errorf("read times of %q: %w", feed, orShort(err))
	}
	times, _ := reply[0].([]any)
	dead, _ := reply[1].([]any)
	if len(times) != 1+2*len(ids) {
		return feedTimes{}, fmt.Errorf("read times of %q: %w", feed, orShort(nil))
	}
	ft := feedTimes{feed: msTime(times[0]), items: make([]itemTimes, len(ids))}
	for i := range ids {
		ft.items[i] = itemTimes{published: msTime(times[1+2*i]), updated: msTime(times[2+2*i])}
	}
	for i := 0; i+1 < len(dead); i += 2 {
		id, _ := dead[i].(string)
		ft.deleted = append(ft.deleted, tombstone{id: id, when: msTime(dead[i+1])})
	}
	return ft, nil
}

// timesJoin asks a page read for each item's recorded times: its "p:" and
// "u:" fields of the feed's times hash, in that order.
func timesJoin(feed string) *thoonk.PageJoin {
	return &thoonk.PageJoin{Key: prefixTimes + feed, Prefixes: []string{"p:", "u:"}}
}

// feedHead is what a render reads besides the page: the feed's config,
// its last change recorded (zero when none), and its tombstones.
type feedHead struct {
	config  map[string]string
	changed time.Time
	deleted []tombstone
}

// readHead queues the reads of a feed's config, recorded change time and
// tombstones younger than ttl (none when ttl is 0) on pipe, and returns
// the function that gives them once the pipeline ran.
func readHead(ctx context.Context, pipe redis.Pipeliner, feed string, ttl time.Duration, now time.Time) func() (feedHead, error) {
	cfg := pipe.HGetAll(ctx, "feed.config:"+feed)
	changed := pipe.HGet(ctx, prefixTimes+feed, "c")
	var dead *redis.ZSliceCmd
	if ttl > 0 {
		dead = pipe.ZRevRangeByScoreWithScores(ctx, prefixDeleted+feed, &redis.ZRangeBy{
			Min: strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10), Max: "+inf", Count: maxTombstones})
	}
	return func() (feedHead, error) { return headOf(feed, cfg, changed, dead) }
}

// headOf reads the replies readHead queued.
func headOf(feed string, cfg *redis.MapStringStringCmd, changed *redis.StringCmd, dead *redis.ZSliceCmd) (feedHead, error) {
	var h feedHead
	var err error
	if h.config, err = cfg.Result(); err != nil {
		if permanent(err) {
			return h, &thoonk.MalformedError{Feed: feed, Reason: "feed.config:" + feed + " is not a hash"}
		}
		return h, fmt.Errorf("read %q: %w", feed, err)
	}
	c, err := changed.Result()
	switch {
	case permanent(err):
		return h, &thoonk.MalformedError{Feed: feed, Reason: "the adapter's key " + prefixTimes + feed + ": " + err.Error()}
	case err != nil && !errors.Is(err, redis.Nil):
		return h, fmt.Errorf("read times of %q: %w", feed, err)
	}
	h.changed = msTime(c)
	if dead != nil {
		zs, err := dead.Result()
		if permanent(err) {
			return h, &thoonk.MalformedError{Feed: feed, Reason: "the adapter's key " + prefixDeleted + feed + ": " + err.Error()}
		} else if err != nil {
			return h, fmt.Errorf("read tombstones of %q: %w", feed, err)
		}
		for _, z := range zs {
			id, _ := z.Member.(string)
			h.deleted = append(h.deleted, tombstone{id: id, when: time.UnixMilli(int64(z.Score)).UTC()})
		}
	}
	return h, nil
}

// joinedTimes returns the times a page read joined (see timesJoin), and
// false when a render must record some first: the feed's change time is
// unknown, or a sorted feed's item has none (readTimes fills them in).
func joinedTimes(head feedHead, items []thoonk.Item, sorted bool) (feedTimes, bool) {
	if head.changed.IsZero() {
		return feedTimes{}, false
	}
	ft := feedTimes{feed: head.changed, items: make([]itemTimes, len(items)), deleted: head.deleted}
	for i, it := range items {
		if len(it.Joined) != 2 || sorted && it.Joined[1] == "" {
			return feedTimes{}, false
		}
		ft.items[i] = itemTimes{published: msTime(it.Joined[0]), updated: msTime(it.Joined[1])}
	}
	return ft, true
}

func orShort(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("short reply")
}

// msTime parses a reply holding milliseconds since the epoch; anything
// else is the zero time.
func msTime(v any) time.Time {
	s, _ := v.(string)
	ms, err := strconv.ParseFloat(s, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms)).UTC()
}
