package xmpp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

const (
	// cursorFlush is how often changed cursors are written to Redis: at
	// most one write per node per interval, however many notifications.
	cursorFlush = time.Second
	// stopFlushTimeout bounds the last write of the cursors when the
	// adapter stops.
	stopFlushTimeout = 2 * time.Second
	// maxSeen bounds the items a mark remembers for one publish time.
	maxSeen = 1024
	// recentSent is how many ids a node remembers having notified lately
	// (see pullBehind).
	recentSent = 256
)

// mark is where a plain feed's notifications stand: the publish time
// (score) of the newest item notified, and every item notified with
// exactly that score, since several items can share a millisecond and
// the feed orders those by id, not by publish order. An item is known by
// its id and a hash of its payload, so that an edit within the same
// millisecond is still new.
type mark struct {
	Hint string     `json:"hint"`
	Seen []seenItem `json:"seen,omitempty"`
}

// seenItem is one notified item of a mark's millisecond.
type seenItem struct {
	ID  string `json:"id"`
	Sum uint64 `json:"sum"`
}

// emptyMark precedes every item: the mark of a feed that had no item
// when it was first followed.
var emptyMark = mark{Hint: "0"}

// markID is the cursor id of a mark that has seen no item; any id does,
// as the cursor's hint places it.
const markID = "-"

// cursor returns the core cursor that pages from the mark: Store.Page
// with Before this cursor returns every item with the mark's score or a
// later one (its hint is the float just below the mark's score, so no
// item of that millisecond is left out whatever its id); has then tells
// the ones already notified.
func (m mark) cursor() thoonk.Cursor {
	id := markID
	if len(m.Seen) > 0 {
		id = m.Seen[len(m.Seen)-1].ID
	}
	f, err := strconv.ParseFloat(m.Hint, 64)
	if err != nil {
		return thoonk.Cursor{ID: id, Hint: m.Hint}
	}
	return thoonk.Cursor{ID: id, Hint: strconv.FormatFloat(math.Nextafter(f, math.Inf(-1)), 'g', -1, 64)}
}

// has reports whether it was notified already (same score, id and payload).
func (m mark) has(it thoonk.Item) bool {
	if !sameScore(it.Cursor().Hint, m.Hint) {
		return false
	}
	seen := seenItem{ID: it.ID, Sum: thoonk.ContentSum(it.Data)}
	return slices.Contains(m.Seen, seen)
}

// next returns the mark once it is notified too (items come oldest first).
func (m mark) next(it thoonk.Item) mark {
	seen := seenItem{ID: it.ID, Sum: thoonk.ContentSum(it.Data)}
	if !sameScore(it.Cursor().Hint, m.Hint) {
		return mark{Hint: it.Cursor().Hint, Seen: []seenItem{seen}}
	}
	kept := m.Seen[max(0, len(m.Seen)-maxSeen+1):]
	return mark{Hint: m.Hint, Seen: append(slices.Clip(kept), seen)}
}

// markOf returns the mark of a feed whose newest items (a page, newest
// first) were all notified: the first item and those sharing its score.
func markOf(newest []thoonk.Item) mark {
	if len(newest) == 0 {
		return emptyMark
	}
	m := mark{Hint: newest[0].Cursor().Hint}
	for i := len(newest) - 1; i >= 0; i-- {
		if sameScore(newest[i].Cursor().Hint, m.Hint) {
			m = m.next(newest[i])
		}
	}
	return m
}

func sameScore(a, b string) bool {
	fa, errA := strconv.ParseFloat(a, 64)
	fb, errB := strconv.ParseFloat(b, 64)
	return errA == nil && errB == nil && fa == fb
}

// nodeCursor is one node's pair of marks: pulled, up to which its feed
// was read and notifications queued (the next read starts there), and
// sent, up to which every subscriber got them (what a restarted bridge
// catches up from).
type nodeCursor struct {
	// mu serializes what moves the pulled mark or changes who is
	// notified from it: a pull (recipients, reads, queued notifications
	// and the new mark) against a subscribe (the new subscription and
	// the mark its last item is read at), so that a new subscriber gets
	// the items after that mark, each once.
	mu           sync.Mutex
	pulled, sent mark
	// recent holds the ids notified lately, oldest first (at most
	// recentSent); only the dispatcher uses it.
	recent []string
}

// noteSent remembers that id was notified.
func (nc *nodeCursor) noteSent(id string) {
	if len(nc.recent) >= recentSent {
		nc.recent = slices.Delete(nc.recent, 0, len(nc.recent)-recentSent+1)
	}
	nc.recent = append(nc.recent, id)
}

// sentLately reports whether id was notified lately.
func (nc *nodeCursor) sentLately(id string) bool {
	return slices.Contains(nc.recent, id)
}

// cursors keeps the marks of the plain feeds that have subscribers, and
// writes the sent marks to Redis (hash feedbridge.xmpp.cursors:JID, JID
// being the component's; field = feed, value = the mark as JSON). Writes
// are coalesced: a changed mark is written at the next flush, every
// cursorFlush and when the adapter stops, so Redis sees at most one write
// per node per interval. Memory and writes are bounded by the number of
// nodes with subscribers.
type cursors struct {
	rdb redis.UniversalClient
	key string
	log *slog.Logger

	mu    sync.Mutex
	nodes map[string]*nodeCursor
	dirty map[string]bool // sent mark changed since the last flush
	gone  map[string]bool // stored mark to delete at the next flush
}

func newCursors(rdb redis.UniversalClient, component string, log *slog.Logger) *cursors {
	return &cursors{rdb: rdb, key: keyPrefix + "cursors:" + component, log: log,
		nodes: map[string]*nodeCursor{}, dirty: map[string]bool{}, gone: map[string]bool{}}
}

// load replaces the marks in memory with the stored ones (at start: the
// bridge catches up from where the last process's notifications stood).
func (c *cursors) load(ctx context.Context) error {
	nodes := map[string]*nodeCursor{}
	iter := c.rdb.HScan(ctx, c.key, 0, "", 1000).Iterator() // HSCAN: a large hash does not block Redis
	for iter.Next(ctx) {
		feed := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		var m mark
		if json.Unmarshal([]byte(iter.Val()), &m) != nil || m.Hint == "" {
			continue // not written by this adapter: the feed starts afresh
		}
		nodes[feed] = &nodeCursor{pulled: m, sent: m}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("load notification cursors: %w", err)
	}
	c.mu.Lock()
	c.nodes = nodes
	clear(c.dirty)
	clear(c.gone)
	c.mu.Unlock()
	return nil
}

// pulledOf returns how far nc's feed was read.
func (c *cursors) pulledOf(nc *nodeCursor) mark {
	c.mu.Lock()
	defer c.mu.Unlock()
	return nc.pulled
}

// pulled returns a node's cursor and its pulled mark.
func (c *cursors) pulled(feed string) (*nodeCursor, mark, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nc := c.nodes[feed]
	if nc == nil {
		return nil, mark{}, false
	}
	return nc, nc.pulled, true
}

// start gives feed the cursor m unless it has one; it returns the
// feed's cursor and pulled mark.
func (c *cursors) start(feed string, m mark) (*nodeCursor, mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nc := c.nodes[feed]; nc != nil {
		return nc, nc.pulled
	}
	nc := &nodeCursor{pulled: m, sent: m}
	c.nodes[feed] = nc
	c.dirty[feed] = true
	delete(c.gone, feed)
	return nc, m
}

// setPulled records how far nc's feed was read, unless the cursor was
// dropped meanwhile.
func (c *cursors) setPulled(feed string, nc *nodeCursor, m mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[feed] == nc {
		nc.pulled = m
	}
}

// delivered records that every subscriber got the notifications up to
// m, unless the cursor was dropped meanwhile.
func (c *cursors) delivered(feed string, nc *nodeCursor, m mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[feed] == nc {
		nc.sent = m
		c.dirty[feed] = true
	}
}

// forget drops feed's cursor when idle reports that the feed has no
// subscriber left; it waits for a subscribe or pull on the node in
// progress, so that a cursor a new subscriber uses is kept.
func (c *cursors) forget(feed string, idle func() bool) {
	c.mu.Lock()
	nc := c.nodes[feed]
	c.mu.Unlock()
	if nc == nil {
		return
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[feed] != nc || !idle() {
		return
	}
	delete(c.nodes, feed)
	delete(c.dirty, feed)
	c.gone[feed] = true
}

// feeds returns the feeds that have a cursor.
func (c *cursors) feeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Keys(c.nodes))
}

// run flushes the changed marks every cursorFlush until ctx ends.
func (c *cursors) run(ctx context.Context) {
	t := time.NewTicker(cursorFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.flush(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("xmpp: store notification cursors; retrying", "err", err)
			}
		}
	}
}

// flush writes the changed marks and deletes the dropped ones, in one
// round trip; what could not be written is kept for the next flush.
func (c *cursors) flush(ctx context.Context) error {
	c.mu.Lock()
	if len(c.dirty) == 0 && len(c.gone) == 0 {
		c.mu.Unlock()
		return nil
	}
	values := make(map[string]any, len(c.dirty))
	for feed := range c.dirty {
		v, _ := json.Marshal(c.nodes[feed].sent) // cannot fail: plain fields
		values[feed] = v
	}
	gone := slices.Collect(maps.Keys(c.gone))
	clear(c.dirty)
	clear(c.gone)
	c.mu.Unlock()

	pipe := c.rdb.Pipeline()
	if len(gone) > 0 {
		pipe.HDel(ctx, c.key, gone...)
	}
	if len(values) > 0 {
		pipe.HSet(ctx, c.key, values)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.mu.Lock()
		for feed := range values {
			if c.nodes[feed] != nil {
				c.dirty[feed] = true
			}
		}
		for _, feed := range gone {
			if c.nodes[feed] == nil {
				c.gone[feed] = true
			}
		}
		c.mu.Unlock()
		return fmt.Errorf("store notification cursors: %w", err)
	}
	return nil
}

// flushAtStop writes the last changes once the adapter's goroutines have
// ended; ctx may be done already (the adapter is stopping), so the write
// gets a short deadline of its own.
func (c *cursors) flushAtStop(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopFlushTimeout)
	defer cancel()
	if err := c.flush(fctx); err != nil {
		c.log.Warn("xmpp: notification cursors not stored at stop; the next start may notify some items again", "err", err)
	}
}
