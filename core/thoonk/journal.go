package thoonk

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A feed's journal is feedbridge's extension of the schema: a Redis stream
// (feedbridge.journal:[feed]) of every change to a plain or sorted feed,
// each entry's id its revision ("<ms>-<n>", increasing), with the item's
// id, its content (or, when large, its content sum) and a sorted feed's
// position string. Changes this package makes are journaled in the same
// script as the change (StoreOptions.Journal); changes other Thoonk
// writers make are journaled from their events (Store.Observe) and by
// reconciliation (Store.Reconcile). Each new entry is also announced on
// feedbridge.journal:[feed], which the Listener turns into events with
// Rev set, so readers resume exactly where they stopped: Journal.Read.
// Every key of the journal carries the feed's name, so it shares the
// feed's Redis Cluster slot.

// Entry is one journaled change.
type Entry struct {
	// Rev is the entry's id: the change's revision.
	Rev string
	// Type is EventPublish, EventEdit, EventRetract, EventPosition or EventDelete.
	Type EventType
	// ID is the item's id ("" for a delete).
	ID string
	// Item is the content (publish, edit), nil when it was too large to
	// journal: read the feed for it (Sum tells its version).
	Item []byte
	// Sum is the content's sum (the first 16 hex digits of its SHA-1)
	// when Item is nil for that reason.
	Sum string
	// Position is a sorted feed's position string (inserts and moves).
	Position string
}

// At returns when the change was journaled (the revision's milliseconds,
// Redis' clock).
func (e Entry) At() time.Time { return RevTime(e.Rev) }

// Event returns the entry as the journal event of feed a subscription
// made with Journal set receives.
func (e Entry) Event(feed string) Event {
	return Event{Type: e.Type, Feed: feed, ID: e.ID, Item: e.Item, Position: e.Position, Rev: e.Rev,
		Large: e.Item == nil && e.Sum != "", Sum: e.Sum}
}

// RevTime returns the time part of a revision (zero for a malformed one).
func RevTime(rev string) time.Time {
	ms, _, ok := strings.Cut(rev, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// ValidRev reports whether rev has the form of a revision ("<ms>-<n>").
func ValidRev(rev string) bool {
	ms, n, ok := strings.Cut(rev, "-")
	_, e1 := strconv.ParseUint(ms, 10, 64)
	_, e2 := strconv.ParseUint(n, 10, 64)
	return ok && e1 == nil && e2 == nil
}

// RevBefore reports whether revision a comes before b (both valid).
func RevBefore(a, b string) bool {
	am, an, _ := strings.Cut(a, "-")
	bm, bn, _ := strings.Cut(b, "-")
	x, _ := strconv.ParseUint(am, 10, 64)
	y, _ := strconv.ParseUint(bm, 10, 64)
	if x != y {
		return x < y
	}
	x, _ = strconv.ParseUint(an, 10, 64)
	y, _ = strconv.ParseUint(bn, 10, 64)
	return x < y
}

// ContentSumHex is the content sum the journal keeps for an item (the
// first 16 hex digits of its SHA-1).
func ContentSumHex(item []byte) string {
	h := sha1.Sum(item)
	return hex.EncodeToString(h[:8])
}

// RevStart is the revision before every entry: read from it to get the
// whole journal.
const RevStart = "0-0"

// ErrGap is the parent of every [GapError].
var ErrGap = errors.New("journal gap")

// GapError reports a read the journal cannot answer exactly.
type GapError struct {
	Feed string
	// Reason is "trimmed" (entries after the revision are no longer
	// kept: older than journal's bounds) or "unknown" (the revision is
	// not from this journal: it was lost, as with a Redis restart
	// without persistence, and begun again, or the revision is foreign).
	Reason string
}

// Error names the feed and the reason.
func (e *GapError) Error() string {
	return fmt.Sprintf("journal of %q: %s: %v", e.Feed, e.Reason, ErrGap)
}

// Unwrap makes errors.Is(err, ErrGap) true.
func (e *GapError) Unwrap() error { return ErrGap }

// Journal is a handle on a feed's journal.
type Journal struct {
	s    *Store
	name string
	k    keys
	err  error
}

// Journal returns a handle on a feed's journal; a bad name is reported by
// every operation.
func (s *Store) Journal(feed string) *Journal {
	return &Journal{s: s, name: feed, k: feedKeys(feed), err: s.validFeed(feed)}
}

// Read returns up to limit entries after revision after (RevStart: from
// the oldest kept), oldest first, and the journal's last revision
// (RevStart when it has none). When the entries after `after` cannot all
// be returned it fails with a *GapError.
func (j *Journal) Read(ctx context.Context, after string, limit int) ([]Entry, string, error) {
	return j.read(ctx, after, limit, "rev")
}

// ReadAfterTime is Read from a point in time instead of a revision: the
// entries journaled after after ("<ms>-<n>", which need not be an entry of
// this journal: the feed may have had no change since, or its first one
// after it). Only changes after it that the journal's bounds dropped make
// it fail (a *GapError, "trimmed"); a journal lost and begun again after
// the point cannot be told from a feed first changed after it.
func (j *Journal) ReadAfterTime(ctx context.Context, after string, limit int) ([]Entry, string, error) {
	return j.read(ctx, after, limit, "time")
}

func (j *Journal) read(ctx context.Context, after string, limit int, mode string) ([]Entry, string, error) {
	if j.err != nil {
		return nil, "", j.err
	}
	if !ValidRev(after) {
		return nil, "", &GapError{Feed: j.name, Reason: "unknown"}
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	vals, err := j.s.run(ctx, scripts.journalRead, []string{j.k.journal, j.k.jmeta}, after, limit, mode).Slice()
	if err != nil {
		return nil, "", fmt.Errorf("journal of %q: %w", j.name, err)
	}
	if stringOf(vals[0]) == "gap" {
		return nil, "", &GapError{Feed: j.name, Reason: stringOf(vals[1])}
	}
	last := stringOf(vals[1])
	if last == "" {
		last = RevStart
	}
	out := make([]Entry, 0, len(vals)-2)
	for _, v := range vals[2:] {
		if e, ok := parseEntry(v); ok {
			out = append(out, e)
		}
	}
	return out, last, nil
}

// Newest reads every entry after revision after, in pages, and returns
// the newest keep of those match accepts (nil: all), oldest first, how
// many matched in all, and the revision of the last entry read (after
// itself when there is none). Memory stays bounded by keep, however long
// the journal. A revision the journal cannot answer from fails with a
// *GapError, as Read does.
func (j *Journal) Newest(ctx context.Context, after string, keep int, match func(Entry) bool) ([]Entry, int, string, error) {
	const page = 1000
	var kept []Entry
	matched := 0
	for {
		es, _, err := j.Read(ctx, after, page)
		if err != nil {
			return kept, matched, after, err
		}
		for _, e := range es {
			if match != nil && !match(e) {
				continue
			}
			matched++
			if kept = append(kept, e); len(kept) > keep {
				kept = kept[1:]
			}
		}
		if len(es) > 0 {
			after = es[len(es)-1].Rev
		}
		if len(es) < page {
			return slices.Clip(kept), matched, after, nil
		}
	}
}

// Last returns the journal's last revision (RevStart when it has none).
func (j *Journal) Last(ctx context.Context) (string, error) {
	if j.err != nil {
		return "", j.err
	}
	xs, err := j.s.cmd.XRevRangeN(ctx, j.k.journal, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("journal of %q: %w", j.name, err)
	}
	if len(xs) == 0 {
		return RevStart, nil
	}
	return xs[0].ID, nil
}

// Revs returns the revisions of the last changes of items of a feed, in
// the order of ids ("" for an item without one: gone, or never journaled).
func (s *Store) Revs(ctx context.Context, feed string, ids ...string) ([]string, error) {
	if err := s.validFeed(feed); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := s.cmd.HMGet(ctx, prefixRevs+feed, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("revisions of %q: %w", feed, err)
	}
	out := make([]string, len(ids))
	for i, v := range vals {
		if str, ok := v.(string); ok {
			out[i], _, _ = strings.Cut(str, " ")
		}
	}
	return out, nil
}

// Journaled returns the revision of the last journaled change of an item
// and whether data is the content that change left it with: false when a
// change to the item is not in the journal yet (a foreign writer's, which
// the journaler appends shortly) or the item has no revision.
func (s *Store) Journaled(ctx context.Context, feed, id string, data []byte) (string, bool, error) {
	if err := s.validFeed(feed); err != nil {
		return "", false, err
	}
	v, err := s.cmd.HGet(ctx, prefixRevs+feed, id).Result()
	if isNil(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("revision of %q in %q: %w", id, feed, err)
	}
	rev, rest, _ := strings.Cut(v, " ")
	sum, _, _ := strings.Cut(rest, " ")
	return rev, sum == ContentSumHex(data), nil
}

// AdvanceMarks stores readers' positions in journals (field -> revision)
// in the hash key, each only when it moves the field's mark on: a late
// write (from a process that lost its lead, say) never takes a mark back.
// With ttl > 0 the hash expires after ttl. The key is the caller's own (on
// Redis Cluster, one key per call).
func (s *Store) AdvanceMarks(ctx context.Context, key string, ttl time.Duration, marks map[string]string) error {
	if len(marks) == 0 {
		return nil
	}
	args := make([]any, 0, 1+2*len(marks))
	args = append(args, ttl.Milliseconds())
	for f, rev := range marks {
		args = append(args, f, rev)
	}
	if err := s.run(ctx, scripts.marksAdvance, []string{key}, args...).Err(); err != nil {
		return fmt.Errorf("advance marks in %s: %w", key, err)
	}
	return nil
}

// parseEntry reads one XRANGE entry: {id, {field, value, ...}}.
func parseEntry(v any) (Entry, bool) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return Entry{}, false
	}
	fields, _ := pair[1].([]any)
	e := Entry{Rev: stringOf(pair[0])}
	for i := 0; i+1 < len(fields); i += 2 {
		val := fields[i+1]
		switch stringOf(fields[i]) {
		case "t":
			e.Type = entryType(stringOf(val))
		case "id":
			e.ID = stringOf(val)
		case "item":
			e.Item = bytesOf(val)
		case "sum":
			e.Sum = stringOf(val)
		case "pos":
			e.Position = stringOf(val)
		}
	}
	return e, e.Type != 0
}

// entryType maps the journal's type names to event types.
func entryType(t string) EventType {
	switch t {
	case "publish":
		return EventPublish
	case "edit":
		return EventEdit
	case "retract":
		return EventRetract
	case "position":
		return EventPosition
	case "delete":
		return EventDelete
	}
	return 0
}

// Observe journals a change another Thoonk writer made, seen as ev (a
// publish, edit, retract or position event of the schema's channels),
// unless the journal has it already (this package's own changes are
// journaled as they are made) or the feed no longer holds it (the later
// change is observed in its turn). It returns the new entry's revision,
// or "" when nothing was journaled. One process of a fleet observes.
func (s *Store) Observe(ctx context.Context, ev Event) (string, error) {
	if s.journal.MaxEvents <= 0 || ev.Rev != "" {
		return "", nil
	}
	var typ, arg string
	switch ev.Type {
	case EventPublish, EventEdit:
		typ, arg = "publish", string(ev.Item)
	case EventRetract:
		typ = "retract"
	case EventPosition:
		typ, arg = "position", ev.Position
	default:
		return "", nil
	}
	return s.observe(ctx, ev.Feed, typ, ev.ID, arg, "")
}

func (s *Store) observe(ctx context.Context, feed, typ, id, arg, pos string) (string, error) {
	if err := s.validFeed(feed); err != nil {
		return "", err
	}
	rev, err := s.run(ctx, scripts.journalObserve, feedKeys(feed).feed(), feed, s.jmax, s.jitem, typ, id, arg, pos).Text()
	if err != nil {
		return "", fmt.Errorf("observe %s in %q: %w", typ, feed, err)
	}
	return rev, nil
}

// Reconcile brings a feed's journal up to what the feed holds, after
// changes may have gone unobserved (no process listening, events lost):
// items new or changed since their journaled revision are journaled as
// publishes or edits, items gone as retracts. Each is re-checked
// atomically, so reconciling alongside live changes is safe. A sorted
// feed's new items are journaled with the position after their
// predecessor; reorderings of items already journaled are not detected.
// It returns the number of entries appended.
func (s *Store) Reconcile(ctx context.Context, feed string) (int, error) {
	if s.journal.MaxEvents <= 0 {
		return 0, nil
	}
	if err := s.validFeed(feed); err != nil {
		return 0, err
	}
	typ, err := s.Type(ctx, feed)
	if err != nil {
		return 0, err
	}
	if typ != TypeFeed && typ != TypeSorted {
		return 0, nil
	}
	k := feedKeys(feed)
	prev := map[string]string{}   // a sorted feed's item -> its predecessor's position
	index := map[string]float64{} // a sorted feed's item -> its place
	if typ == TypeSorted {
		order, err := s.rdb.LRange(ctx, k.ids, 0, -1).Result()
		if err != nil {
			return 0, fmt.Errorf("reconcile %q: %w", feed, err)
		}
		for i, id := range order {
			index[id] = float64(i)
			if i == 0 {
				prev[id] = "begin:"
			} else {
				prev[id] = order[i-1] + ":"
			}
		}
	}
	n := 0
	record := func(typ, id, arg, pos string) error {
		rev, err := s.observe(ctx, feed, typ, id, arg, pos)
		if rev != "" {
			n++
		}
		return err
	}
	// items new or changed since their journaled revision, journaled in
	// the feed's order (oldest first; a sorted feed's position order)
	// within each batch the scan returns (all of a small feed's at once)
	err = s.scanHash(ctx, k.items, func(ids, items []string) error {
		revs, err := s.rdb.HMGet(ctx, k.revs, ids...).Result()
		if err != nil {
			return err
		}
		type change struct {
			id, item string
			at       float64
		}
		var changed []change
		for i, id := range ids {
			rv, _ := revs[i].(string)
			_, sum, _ := strings.Cut(rv, " ")
			sum, _, _ = strings.Cut(sum, " ")
			if rv == "" || sum != ContentSumHex([]byte(items[i])) {
				changed = append(changed, change{id: id, item: items[i], at: index[id]})
			}
		}
		if len(changed) > 1 && typ == TypeFeed {
			pipe := s.rdb.Pipeline()
			scores := make([]*redis.FloatCmd, len(changed))
			for i, c := range changed {
				scores[i] = pipe.ZScore(ctx, k.ids, c.id)
			}
			_, _ = pipe.Exec(ctx) // (an id without a score sorts first)
			for i := range changed {
				changed[i].at = float64(ScoreTime(scores[i].Val()).UnixMilli())
			}
		}
		slices.SortStableFunc(changed, func(a, b change) int {
			if c := cmp.Compare(a.at, b.at); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		for _, c := range changed {
			if err := record("publish", c.id, c.item, prev[c.id]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("reconcile %q: %w", feed, err)
	}
	// items journaled but gone
	err = s.scanHash(ctx, k.revs, func(ids, _ []string) error {
		pipe := s.rdb.Pipeline()
		there := make([]*redis.BoolCmd, len(ids))
		for i, id := range ids {
			there[i] = pipe.HExists(ctx, k.items, id)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for i, id := range ids {
			if !there[i].Val() {
				if err := record("retract", id, "", ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("reconcile %q: %w", feed, err)
	}
	return n, nil
}

// scanHash calls fn with the fields and values of a hash, a thousand or
// so at a time (HSCAN: a field changed meanwhile may be seen twice).
func (s *Store) scanHash(ctx context.Context, key string, fn func(fields, values []string) error) error {
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return err
		}
		fields, values := make([]string, 0, len(kv)/2), make([]string, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			fields, values = append(fields, kv[i]), append(values, kv[i+1])
		}
		if len(fields) > 0 {
			if err := fn(fields, values); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// TrimJournal drops a feed's journal entries older than the journal's
// MaxAge (nothing without one) and returns how many went.
func (s *Store) TrimJournal(ctx context.Context, feed string) (int64, error) {
	if s.journal.MaxAge <= 0 {
		return 0, nil
	}
	if err := s.validFeed(feed); err != nil {
		return 0, err
	}
	k := feedKeys(feed)
	cutoff := time.Now().Add(-s.journal.MaxAge).UnixMilli()
	n, err := s.run(ctx, scripts.journalTrim, []string{k.journal, k.jmeta}, cutoff).Int64()
	if err != nil {
		return 0, fmt.Errorf("trim journal of %q: %w", feed, err)
	}
	return n, nil
}

// JournalOptions returns the store's journal bounds.
func (s *Store) JournalOptions() JournalOptions { return s.journal }
