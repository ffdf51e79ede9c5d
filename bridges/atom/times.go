package atom

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
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

// recordEvent stores what an event tells about item times and tombstones.
// Every bridge process records the same events; the writes are idempotent
// up to the few milliseconds between the processes' clocks.
func recordEvent(ctx context.Context, rdb redis.UniversalClient, ev core.Event, ttl time.Duration) error {
	tk, dk := prefixTimes+ev.Feed, prefixDeleted+ev.Feed
	at := ev.At.UnixMilli()
	pipe := rdb.Pipeline()
	switch ev.Type {
	case core.EventPublish:
		pipe.HSetNX(ctx, tk, "p:"+ev.ID, at)
		pipe.HSet(ctx, tk, "u:"+ev.ID, at)
		pipe.ZRem(ctx, dk, ev.ID)
	case core.EventEdit, core.EventPosition:
		pipe.HSet(ctx, tk, "u:"+ev.ID, at)
	case core.EventRetract:
		pipe.HDel(ctx, tk, "p:"+ev.ID, "u:"+ev.ID)
		if ttl > 0 {
			pipe.ZAdd(ctx, dk, redis.Z{Score: float64(at), Member: ev.ID})
			pipe.ZRemRangeByScore(ctx, dk, "-inf", "("+strconv.FormatInt(at-ttl.Milliseconds(), 10))
			pipe.ZRemRangeByRank(ctx, dk, 0, -maxTombstones-1)
			pipe.PExpire(ctx, dk, ttl)
		}
	case core.EventCreate, core.EventConfig:
		// only the feed's time, below
	case core.EventDelete:
		pipe.Del(ctx, tk, dk)
	default:
		return nil
	}
	if ev.Type != core.EventDelete {
		// Every change moves the feed's updated time and Last-Modified on,
		// also when its entries carry older times of their own or leave
		// no tombstone.
		pipe.HSet(ctx, tk, "c", at)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record %s of %q: %w", ev.Type, ev.Feed, err)
	}
	return nil
}

// readTimesScript returns the feed's time, each item's first-publish and
// last-update times, and the tombstones to list. Items without an update
// time get the current one when ARGV[2] is "1" (sorted feeds keep no
// times: the first time the bridge shows an item stands in, and is kept so
// that every render and every process agree); their publish is marked
// unknown ("0"), so that a later edit, which a sorted feed announces as a
// publish, is not recorded as the publish.
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
