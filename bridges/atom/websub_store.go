package atom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// The hub's Redis keys. Every key a script touches together, and the
// delivery job feed, carry the hash tag {websub}, so on Redis Cluster
// they share a slot (and the hub's load goes to that slot's node).
//
//   - feedbridge.{websub} is the Thoonk job feed of fan-out and delivery
//     jobs (see jobFor).
//   - feedbridge.{websub}.sub:[id] is a hash per subscription: topic (as the
//     subscriber gave it), self (canonical topic URL), feed, format,
//     callback, secret, lease (s), expires (ms), actor, created (ms), last
//     (digest of the last document delivered), attempt (failures of the
//     current notification), failing (ms: first failure since the last
//     success), status (last answer).
//   - feedbridge.{websub}.subs is a sorted set: subscription id -> lease end (ms).
//   - feedbridge.{websub}.feed:[feed] is the set of a feed's subscription ids.
//   - feedbridge.{websub}.feeds is the set of feeds having subscriptions.
//   - feedbridge.{websub}.dirty is a sorted set of members ("f:[feed]" for a
//     feed whose change is not fanned out yet, "d:[id]" for a subscription
//     owed a delivery) -> time of the oldest change not handled (ms).
//   - feedbridge.{websub}.retry is a sorted set: member -> when its next
//     attempt is due (ms).
//   - feedbridge.{websub}.doc:[format]:[feed] is a hash: the document last
//     fanned out (body, sum, type).
//   - feedbridge.websub.seen:[hash].[n] marks a feed event one process
//     took (dedup across a fleet); it expires after dedupWindow.
const (
	webSubQueue = "feedbridge.{websub}"
	keySubs     = webSubQueue + ".subs"
	keyFeeds    = webSubQueue + ".feeds"
	keyDirty    = webSubQueue + ".dirty"
	keyRetry    = webSubQueue + ".retry"
	prefixSub   = webSubQueue + ".sub:"
	prefixFeed  = webSubQueue + ".feed:"
	prefixDoc   = webSubQueue + ".doc:"
	keySeen     = "feedbridge.websub.seen:"
)

// Member kinds in the dirty and retry sets; a member is kind + ":" + name.
const (
	kindFanOut   = 'f'
	kindDelivery = 'd'
)

func fanOutMember(feed string) string { return "f:" + feed }
func deliveryMember(id string) string { return "d:" + id }

// jobFor returns a member's job: its id (deterministic, so that one job at
// a time exists per member), its payload and whether it jumps the queue
// (fan-outs do: they are quick and decide which deliveries are owed).
func jobFor(member string) (id string, payload []byte, high bool) {
	name := member[2:]
	if member[0] == kindFanOut {
		sum := sha256.Sum256([]byte(name))
		return "f." + hex.EncodeToString(sum[:16]), []byte(name), true
	}
	return "d." + name, []byte(name), false
}

// memberOf returns the member a job serves.
func memberOf(job thoonk.Job) (string, bool) {
	switch {
	case strings.HasPrefix(job.ID, "f.") && len(job.Item) > 0:
		return fanOutMember(string(job.Item)), true
	case strings.HasPrefix(job.ID, "d.") && job.ID[2:] == string(job.Item):
		return deliveryMember(string(job.Item)), true
	}
	return "", false
}

// subscriptionID is the key of a (topic, callback) pair, WebSub's unique
// key of a subscription.
func subscriptionID(self, callback string) string {
	sum := sha256.Sum256([]byte(self + "\n" + callback))
	return hex.EncodeToString(sum[:16])
}

// subscription is one verified subscription as stored.
type subscription struct {
	id, topic, self, feed, format, callback, secret, actor, last, status string
	lease                                                                time.Duration
	expires, failing                                                     time.Time
	attempt                                                              int
}

func msOf(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func subscriptionOf(id string, h map[string]string) *subscription {
	if len(h) == 0 || h["callback"] == "" {
		return nil
	}
	lease, _ := strconv.Atoi(h["lease"])
	attempt, _ := strconv.Atoi(h["attempt"])
	return &subscription{
		id: id, topic: h["topic"], self: h["self"], feed: h["feed"], format: h["format"], callback: h["callback"],
		secret: h["secret"], actor: h["actor"], last: h["last"], status: h["status"],
		lease: time.Duration(lease) * time.Second, expires: msTime(h["expires"]), failing: msTime(h["failing"]), attempt: attempt,
	}
}

// webSubStore reads and writes the hub's keys.
type webSubStore struct{ rdb redis.UniversalClient }

func (w *webSub) store() webSubStore { return webSubStore{rdb: w.hub.Store.Client()} }

// claimEvents sets the dedup key of each change and reports which ones
// this process took (the others were taken by another process).
func (s webSubStore) claimEvents(ctx context.Context, batch []change) ([]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(batch))
	for i, c := range batch {
		cmds[i] = pipe.SetNX(ctx, c.key, "1", dedupWindow)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("websub dedup: %w", err)
	}
	won := make([]bool, len(batch))
	for i, c := range cmds {
		won[i] = c.Val()
	}
	return won, nil
}

// markScript records that members changed at ARGV[1] (keeping an older
// mark) and returns those not waiting for a retry: their jobs are to be
// queued (a retry will carry the change of the others).
var markScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i])
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then out[#out + 1] = ARGV[i] end
end
return out
`)

func (s webSubStore) mark(ctx context.Context, at time.Time, members []string) ([]string, error) {
	args := append([]any{at.UnixMilli()}, anys(members)...)
	put, err := markScript.Run(ctx, s.rdb, []string{keyDirty, keyRetry}, args...).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("websub mark: %w", err)
	}
	return put, nil
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// claimMarkScript removes a member's mark as its job starts, returning the
// time of the oldest change the job covers (nil when unmarked: a job run
// again after its worker died).
var claimMarkScript = redis.NewScript(`
local t = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return t
`)

// claimMark removes member's mark and returns when it changed (zero when
// unmarked).
func (s webSubStore) claimMark(ctx context.Context, member string) (time.Time, error) {
	v, err := claimMarkScript.Run(ctx, s.rdb, []string{keyDirty}, member).Text()
	if err != nil && err != redis.Nil {
		return time.Time{}, fmt.Errorf("websub claim mark: %w", err)
	}
	return msTime(v), nil
}

// claimDelivery removes a subscription's mark as its delivery starts and
// reads the subscription (nil when gone), in one round trip; changed is
// when the oldest change it covers happened (zero: unknown).
func (s webSubStore) claimDelivery(ctx context.Context, id string) (changed time.Time, sub *subscription, err error) {
	pipe := s.rdb.Pipeline()
	mark := claimMarkScript.Eval(ctx, pipe, []string{keyDirty}, deliveryMember(id))
	h := pipe.HGetAll(ctx, prefixSub+id)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return time.Time{}, nil, fmt.Errorf("websub claim delivery: %w", err)
	}
	v, _ := mark.Text()
	return msTime(v), subscriptionOf(id, h.Val()), nil
}

// pendingAgainScript reports whether a member was marked again while its
// job ran, and is not waiting for a retry.
var pendingAgainScript = redis.NewScript(`
if redis.call('ZSCORE', KEYS[1], ARGV[1]) and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 1 end
return 0
`)

func (s webSubStore) pendingAgain(ctx context.Context, member string) (bool, error) {
	n, err := pendingAgainScript.Run(ctx, s.rdb, []string{keyDirty, keyRetry}, member).Int()
	if err != nil {
		return false, fmt.Errorf("websub pending: %w", err)
	}
	return n == 1, nil
}

// dueScript moves up to ARGV[2] members whose retry is due (at ARGV[1])
// to the marked ones, and returns them with the time of the next retry.
var dueScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, nxt[2] or ''}
`)

// dueRetries takes the members whose retry is due; next is when the next
// retry is (zero: none).
func (s webSubStore) dueRetries(ctx context.Context, now time.Time, limit int) (due []string, next time.Time, err error) {
	v, err := dueScript.Run(ctx, s.rdb, []string{keyRetry, keyDirty}, now.UnixMilli(), limit).Slice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("websub retries: %w", err)
	}
	for _, m := range v[0].([]any) {
		due = append(due, m.(string))
	}
	return due, msTime(v[1]), nil
}

// staleScript returns up to ARGV[2] members marked before ARGV[1] that do
// not wait for a retry: their job may never have been queued.
var staleScript = redis.NewScript(`
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(old) do
  if not redis.call('ZSCORE', KEYS[2], m) then out[#out + 1] = m end
end
return out
`)

func (s webSubStore) staleMarks(ctx context.Context, before time.Time, limit int) ([]string, error) {
	out, err := staleScript.Run(ctx, s.rdb, []string{keyDirty, keyRetry}, before.UnixMilli(), limit).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("websub stale marks: %w", err)
	}
	return out, nil
}

// retryLater schedules a member's next attempt.
func (s webSubStore) retryLater(ctx context.Context, member string, at time.Time) error {
	if err := s.rdb.ZAdd(ctx, keyRetry, redis.Z{Score: float64(at.UnixMilli()), Member: member}).Err(); err != nil {
		return fmt.Errorf("websub retry: %w", err)
	}
	return nil
}

// saveScript writes a verified subscription (ARGV[1] id, [2] lease end,
// [3] feed, [4] the hub's limit, [5] secret or "", [6] now, then field and
// value pairs), unless it is new and the hub is full (-1). It returns 1
// for a new subscription, 0 for a renewal.
var saveScript = redis.NewScript(`
local new = redis.call('EXISTS', KEYS[1]) == 0
if new and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
if ARGV[5] == '' then redis.call('HDEL', KEYS[1], 'secret') else redis.call('HSET', KEYS[1], 'secret', ARGV[5]) end
redis.call('HSETNX', KEYS[1], 'created', ARGV[6])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
if new then return 1 end
return 0
`)

// save stores a verified subscription; full is true when it is new and
// the hub has max subscriptions already.
func (s webSubStore) save(ctx context.Context, sub *subscription, max int) (isNew, full bool, err error) {
	n, err := saveScript.Run(ctx, s.rdb, []string{prefixSub + sub.id, keySubs, prefixFeed + sub.feed, keyFeeds},
		sub.id, sub.expires.UnixMilli(), sub.feed, max, sub.secret, time.Now().UnixMilli(),
		"topic", sub.topic, "self", sub.self, "feed", sub.feed, "format", sub.format, "callback", sub.callback,
		"actor", sub.actor, "lease", int(sub.lease/time.Second), "expires", sub.expires.UnixMilli()).Int()
	if err != nil {
		return false, false, fmt.Errorf("websub save subscription: %w", err)
	}
	return n == 1, n == -1, nil
}

// dropScript deletes a subscription and its marks (ARGV[1] id, [2] feed,
// [3] member; with ARGV[4] set, only if its lease ends by then), and the
// feed's documents with its last subscription (KEYS[7..9]). It returns 1
// when it deleted one.
var dropScript = redis.NewScript(`
if ARGV[4] ~= '' then
  local e = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0')
  if e > tonumber(ARGV[4]) then return 0 end
end
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
  redis.call('DEL', KEYS[7], KEYS[8], KEYS[9])
end
redis.call('ZREM', KEYS[5], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
return n
`)

// remove deletes a subscription; with expiredBy set, only if its lease
// ends by then (a renewal keeps it). It reports whether it deleted one.
func (s webSubStore) remove(ctx context.Context, id, feed string, expiredBy time.Time) (bool, error) {
	cond := ""
	if !expiredBy.IsZero() {
		cond = strconv.FormatInt(expiredBy.UnixMilli(), 10)
	}
	n, err := dropScript.Run(ctx, s.rdb, []string{prefixSub + id, keySubs, prefixFeed + feed, keyFeeds, keyDirty, keyRetry,
		docKey(formatAtom, feed), docKey(formatRSS, feed), docKey(formatJSON, feed)},
		id, feed, deliveryMember(id), cond).Int()
	if err != nil {
		return false, fmt.Errorf("websub remove subscription: %w", err)
	}
	return n == 1, nil
}

// updateScript writes field and value pairs (from ARGV[3]) of an existing
// subscription and, when ARGV[2] > 0, schedules its retry then.
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[2]) > 0 then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
`)

// update records a delivery's outcome on a subscription that still exists
// and, when retry is set, schedules the next attempt.
func (s webSubStore) update(ctx context.Context, id string, retry time.Time, fields ...any) error {
	at := int64(0)
	if !retry.IsZero() {
		at = retry.UnixMilli()
	}
	args := append([]any{deliveryMember(id), at}, fields...)
	if err := updateScript.Run(ctx, s.rdb, []string{prefixSub + id, keyRetry}, args...).Err(); err != nil {
		return fmt.Errorf("websub update subscription: %w", err)
	}
	return nil
}

// load reads a subscription (nil when there is none).
func (s webSubStore) load(ctx context.Context, id string) (*subscription, error) {
	h, err := s.rdb.HGetAll(ctx, prefixSub+id).Result()
	if err != nil {
		return nil, fmt.Errorf("websub load subscription: %w", err)
	}
	return subscriptionOf(id, h), nil
}

// ofFeed reads every subscription of a feed.
func (s webSubStore) ofFeed(ctx context.Context, feed string) ([]*subscription, error) {
	ids, err := s.rdb.SMembers(ctx, prefixFeed+feed).Result()
	if err != nil {
		return nil, fmt.Errorf("websub subscriptions of %q: %w", feed, err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, prefixSub+id)
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("websub subscriptions of %q: %w", feed, err)
		}
	}
	var out []*subscription
	for i, c := range cmds {
		if sub := subscriptionOf(ids[i], c.Val()); sub != nil {
			out = append(out, sub)
		}
	}
	return out, nil
}

// expired returns up to limit subscriptions whose lease ended by now.
func (s webSubStore) expired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, keySubs, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("websub expired leases: %w", err)
	}
	return ids, nil
}

// subscribedFeeds returns the feeds having subscriptions.
func (s webSubStore) subscribedFeeds(ctx context.Context) ([]string, error) {
	names, err := s.rdb.SMembers(ctx, keyFeeds).Result()
	if err != nil {
		return nil, fmt.Errorf("websub feeds: %w", err)
	}
	return names, nil
}

// exists reports whether a subscription exists, and how many the hub has.
func (s webSubStore) exists(ctx context.Context, id string) (bool, int64, error) {
	pipe := s.rdb.Pipeline()
	ex := pipe.Exists(ctx, prefixSub+id)
	n := pipe.ZCard(ctx, keySubs)
	if _, err := pipe.Exec(ctx); err != nil {
		return false, 0, fmt.Errorf("websub subscriptions: %w", err)
	}
	return ex.Val() == 1, n.Val(), nil
}

// counts returns the number of subscriptions and of deliveries waiting
// for a retry.
func (s webSubStore) counts(ctx context.Context) (subs, retry int64, err error) {
	pipe := s.rdb.Pipeline()
	a := pipe.ZCard(ctx, keySubs)
	b := pipe.ZCard(ctx, keyRetry)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("websub counts: %w", err)
	}
	return a.Val(), b.Val(), nil
}

// storedDoc is a document fanned out to subscriptions.
type storedDoc struct {
	body       []byte
	sum, ctype string
}

func docKey(format, feed string) string { return prefixDoc + format + ":" + feed }

// saveDoc keeps the document a fan-out delivers.
func (s webSubStore) saveDoc(ctx context.Context, format, feed string, d storedDoc) error {
	if err := s.rdb.HSet(ctx, docKey(format, feed), "sum", d.sum, "type", d.ctype, "body", d.body).Err(); err != nil {
		return fmt.Errorf("websub save document: %w", err)
	}
	return nil
}

// docSum returns the digest of a feed's fanned-out document ("" if none).
func (s webSubStore) docSum(ctx context.Context, format, feed string) (string, error) {
	sum, err := s.rdb.HGet(ctx, docKey(format, feed), "sum").Result()
	if err == redis.Nil {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("websub document: %w", err)
	}
	return sum, nil
}

// doc reads a feed's fanned-out document (nil if none).
func (s webSubStore) doc(ctx context.Context, format, feed string) (*storedDoc, error) {
	h, err := s.rdb.HGetAll(ctx, docKey(format, feed)).Result()
	if err != nil {
		return nil, fmt.Errorf("websub document: %w", err)
	}
	if h["sum"] == "" {
		return nil, nil
	}
	return &storedDoc{body: []byte(h["body"]), sum: h["sum"], ctype: h["type"]}, nil
}
