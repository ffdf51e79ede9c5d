package xmpp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

const (
	// cursorFlush is how often changed cursors are written to Redis: at
	// most one write per interval, however many notifications (and what
	// a process killed without warning sends again after a takeover).
	cursorFlush = 250 * time.Millisecond
	// stopFlushTimeout bounds the last write of the cursors when the
	// adapter stops.
	stopFlushTimeout = 2 * time.Second
)

// nodeCursor is where one node's notifications stand in its feed's
// journal: pulled, the revision of the last change queued for its
// subscribers (live events and catch-ups go on after it), and sent, the
// last change every subscriber was sent (what the next leader of the
// component catches up from).
type nodeCursor struct {
	// mu serializes what moves pulled or changes who is notified from
	// it: a change queued for the subscribers against a subscribe (the
	// new subscription and the last item it is sent), so that a new
	// subscriber gets each change after its last item once.
	mu           sync.Mutex
	pulled, sent string
}

// cursors keeps the journal positions of the nodes that have
// subscribers, and writes the sent ones to Redis (hash
// feedbridge.xmpp.cursors:JID, JID being the component's; field = feed,
// value = a revision). Writes are coalesced (every cursorFlush and when
// the adapter stops) and only move a stored cursor on, so a process that
// lost the component's lease cannot take one back; while the lease is not
// valid nothing is written.
type cursors struct {
	store *thoonk.Store
	key   string
	log   *slog.Logger
	valid func() bool // the component's lease (always true when alone)

	mu    sync.Mutex
	nodes map[string]*nodeCursor
	dirty map[string]bool // sent changed since the last flush
	gone  map[string]bool // stored cursor to delete at the next flush
}

func newCursors(store *thoonk.Store, component string, log *slog.Logger) *cursors {
	return &cursors{store: store, key: keyPrefix + "cursors:" + component, log: log, valid: func() bool { return true },
		nodes: map[string]*nodeCursor{}, dirty: map[string]bool{}, gone: map[string]bool{}}
}

// load replaces the cursors in memory with the stored ones (as the
// component's leader starts: it goes on from where the last one's
// notifications stood). A stored value that is no revision (an older
// version's) is left out: that node starts afresh.
func (c *cursors) load(ctx context.Context) error {
	nodes := map[string]*nodeCursor{}
	iter := c.store.Client().HScan(ctx, c.key, 0, "", 1000).Iterator() // HSCAN: a large hash does not block Redis
	for iter.Next(ctx) {
		feed := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		if rev := iter.Val(); thoonk.ValidRev(rev) {
			nodes[feed] = &nodeCursor{pulled: rev, sent: rev}
		}
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

// get returns a node's cursor.
func (c *cursors) get(feed string) (*nodeCursor, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nc := c.nodes[feed]
	return nc, nc != nil
}

// pulledOf returns how far nc's feed was queued.
func (c *cursors) pulledOf(nc *nodeCursor) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return nc.pulled
}

// start gives feed the cursor rev unless it has one; it returns the
// feed's cursor.
func (c *cursors) start(feed, rev string) *nodeCursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nc := c.nodes[feed]; nc != nil {
		return nc
	}
	nc := &nodeCursor{pulled: rev, sent: rev}
	c.nodes[feed] = nc
	c.dirty[feed] = true
	delete(c.gone, feed)
	return nc
}

// setPulled records how far nc's feed was queued, unless the cursor was
// dropped meanwhile.
func (c *cursors) setPulled(feed string, nc *nodeCursor, rev string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[feed] == nc && thoonk.RevBefore(nc.pulled, rev) {
		nc.pulled = rev
	}
}

// delivered records that every subscriber was sent the changes up to
// rev, unless the cursor was dropped meanwhile.
func (c *cursors) delivered(feed string, nc *nodeCursor, rev string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[feed] == nc && thoonk.RevBefore(nc.sent, rev) {
		nc.sent = rev
		c.dirty[feed] = true
	}
}

// forget drops feed's cursor when idle reports that the feed has no
// subscriber left; it waits for a subscribe or a change on the node in
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

// run flushes the changed cursors every cursorFlush until ctx ends.
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

// flush writes the changed cursors and deletes the dropped ones; what
// could not be written is kept for the next flush. Without a valid lease
// it writes nothing (another process may lead the component by now).
// Given feeds, it writes only theirs (a new subscription's cursor is
// written before the subscription is confirmed, so that a kill -9 right
// after the reply loses none of the changes that follow).
func (c *cursors) flush(ctx context.Context, only ...string) error {
	c.mu.Lock()
	if len(c.dirty) == 0 && len(c.gone) == 0 || !c.valid() {
		c.mu.Unlock()
		return nil
	}
	values := make(map[string]string, len(c.dirty))
	var gone []string
	if only == nil {
		for feed := range c.dirty {
			values[feed] = c.nodes[feed].sent
		}
		gone = slices.Collect(maps.Keys(c.gone))
		clear(c.dirty)
		clear(c.gone)
	}
	for _, feed := range only {
		if c.dirty[feed] {
			values[feed] = c.nodes[feed].sent
			delete(c.dirty, feed)
		}
	}
	c.mu.Unlock()
	if len(values) == 0 && len(gone) == 0 {
		return nil
	}

	err := c.store.AdvanceMarks(ctx, c.key, 0, values)
	if err == nil && len(gone) > 0 {
		err = c.store.Client().HDel(ctx, c.key, gone...).Err()
	}
	if err != nil {
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
		c.log.Warn("xmpp: notification cursors not stored at stop; the next start may notify some changes again", "err", err)
	}
}
