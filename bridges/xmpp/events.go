package xmpp

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

const (
	// eventQueue bounds the feed events waiting for the dispatcher; on
	// overflow core replaces them with a resync (see thoonk.Subscription).
	eventQueue = 8192
	// maxBatch bounds the events handled before the feeds they concern
	// are read.
	maxBatch = 256
	// pullBatch bounds the items read from a feed in one round trip.
	pullBatch = 100
	// catchUpParallel bounds the feeds a catch-up reads at once.
	catchUpParallel = 32
)

// batch collects the plain feeds that got publishes or edits among the
// events at hand, each read once for all of them.
type batch struct {
	feeds []string
	// ids are the ids of each feed's publishes and edits in the batch, in
	// order (at most maxBatch+1 in all).
	ids map[string][]string
}

func (b *batch) add(feed, id string) {
	if _, ok := b.ids[feed]; !ok {
		b.feeds = append(b.feeds, feed)
	}
	b.ids[feed] = append(b.ids[feed], id)
}

// take removes feed from the batch; it reports whether it was there, and
// the ids of its publishes and edits.
func (b *batch) take(feed string) ([]string, bool) {
	ids, ok := b.ids[feed]
	if ok {
		delete(b.ids, feed)
		b.feeds = slices.DeleteFunc(b.feeds, func(f string) bool { return f == feed })
	}
	return ids, ok
}

func (b *batch) reset() {
	b.feeds = b.feeds[:0]
	clear(b.ids)
}

// dispatch turns feed events into notifications until ctx ends. It first
// catches up (the items published since the last process's notifications,
// see pull), then handles events in batches; it never waits for the
// network: notifications are queued for the notifier.
//
// Plain feeds are notified by reading them, not from the events' payloads:
// a publish or edit event says that the feed has news, and pull reads
// every item published since the node's cursor. One code path thus serves
// live events, resyncs and restarts, a burst of publishes on one feed
// costs one read, and nothing is notified twice.
func (s *service) dispatch(ctx context.Context, events *thoonk.Subscription) {
	s.catchUp(ctx, "start")
	b := &batch{ids: map[string][]string{}}
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			return
		}
		s.onEvent(ctx, ev, b)
		for range maxBatch {
			ev, ok := events.TryNext()
			if !ok {
				break
			}
			s.onEvent(ctx, ev, b)
		}
		for _, feed := range b.feeds {
			s.pull(ctx, feed, b.ids[feed])
		}
		b.reset()
	}
}

func (s *service) onEvent(ctx context.Context, ev thoonk.Event, b *batch) {
	switch ev.Type {
	case thoonk.EventPublish, thoonk.EventEdit:
		if !s.feeds.Allows(ev.Feed) || len(s.subs.subscribers(ev.Feed)) == 0 {
			return
		}
		typ, err := s.feedType(ctx, ev.Feed)
		if err != nil && !errors.Is(err, thoonk.ErrNotFound) {
			s.log.Warn("xmpp: read feed type", "feed", ev.Feed, "err", err)
		}
		switch typ {
		case thoonk.TypeFeed:
			b.add(ev.Feed, ev.ID)
		case thoonk.TypeSorted:
			s.notify.push(ev.Feed, s.itemEvent(ev.Feed, ev.ID, ev.Item), s.recipients(ev.Feed), nil)
		}
	case thoonk.EventRetract:
		// the items published before the retraction are notified before it
		if ids, ok := b.take(ev.Feed); ok {
			s.pull(ctx, ev.Feed, ids)
		}
		if !s.quiet.take(ev.Feed, ev.ID) {
			s.notify.push(ev.Feed, retractEvent(s.node(ev.Feed), ev.ID), s.recipients(ev.Feed), nil)
		}
	case thoonk.EventDelete:
		b.take(ev.Feed)
		s.feedGone(ctx, ev.Feed)
	case thoonk.EventCreate:
		delete(s.types, ev.Feed) // a feed of that name may come back with another type
	case thoonk.EventResync:
		b.reset()
		s.resync(ctx, ev.Reason)
	}
}

// feedGone tells the subscribers of a deleted feed (XEP-0060 8.4.2) and
// drops its subscriptions and cursor.
// The subscriptions go first, so that a subscriber who asks for its
// subscriptions on the notification no longer sees the node.
func (s *service) feedGone(ctx context.Context, feed string) {
	delete(s.types, feed)
	to := s.recipients(feed)
	if err := s.subs.remove(ctx, feed); err != nil {
		s.log.Warn("xmpp: drop the subscriptions of a deleted feed", "feed", feed, "err", err)
	}
	s.notify.push(feed, deleteEvent(s.node(feed)), to, nil)
	s.forgetIdle(feed)
}

// forgetIdle drops feed's cursor once it has no subscriber left.
func (s *service) forgetIdle(feed string) {
	s.cursors.forget(feed, func() bool { return len(s.subs.subscribers(feed)) == 0 })
}

// feedType returns a feed's type, cached for the dispatcher (which alone
// uses the cache: a feed's type never changes, and a deleted feed's entry
// goes with its delete event or a resync).
func (s *service) feedType(ctx context.Context, feed string) (thoonk.FeedType, error) {
	if t, ok := s.types[feed]; ok {
		return t, nil
	}
	t, err := s.hub.Store.Type(ctx, feed)
	if err != nil {
		return "", err
	}
	s.types[feed] = t
	return t, nil
}

// recipients returns the subscribers of feed that want notifications and
// may still read it: the ACL is asked again for every notification.
func (s *service) recipients(feed string) []string {
	if !s.feeds.Allows(feed) {
		return nil
	}
	return slices.DeleteFunc(s.subs.deliverable(feed), func(j string) bool {
		return !s.hub.ACL.Allowed(core.Actor{Protocol: "xmpp", ID: bareOf(j)}, feed, core.OpRead)
	})
}

// resync runs after core reports that events may have been lost (Redis
// reconnected, or the event queue overflowed): the subscriptions are
// reloaded from Redis and every plain feed with subscribers is caught up.
// Retractions lost meanwhile cannot be known and are not replayed.
func (s *service) resync(ctx context.Context, reason thoonk.ResyncReason) {
	if err := s.subs.load(ctx); err != nil {
		s.log.Warn("xmpp: reload subscriptions after resync", "err", err)
	}
	clear(s.types)
	s.catchUp(ctx, reason.String())
}

// catchUp reads every plain feed with subscribers from its cursor (see
// pull); a subscribed feed that no longer exists is notified as deleted.
// The feeds are read catchUpParallel at a time, so that their reads share
// round trips (core's store pipelines concurrent commands).
func (s *service) catchUp(ctx context.Context, reason string) {
	for _, feed := range s.cursors.feeds() {
		s.forgetIdle(feed)
	}
	feeds := slices.DeleteFunc(s.subs.feeds(), func(f string) bool { return !s.feeds.Allows(f) })
	types := make([]thoonk.FeedType, len(feeds))
	errs := make([]error, len(feeds))
	parallel(len(feeds), func(i int) {
		if t, ok := s.types[feeds[i]]; ok {
			types[i] = t
			return
		}
		types[i], errs[i] = s.hub.Store.Type(ctx, feeds[i])
	})
	var plain []string
	for i, feed := range feeds {
		switch err := errs[i]; {
		case errors.Is(err, thoonk.ErrFeedNotFound):
			s.feedGone(ctx, feed) // deleted while its events were lost
		case err != nil:
			s.log.Warn("xmpp: catch up: read feed type", "feed", feed, "err", err)
		default:
			s.types[feed] = types[i]
			if types[i] == thoonk.TypeFeed {
				plain = append(plain, feed)
			}
		}
	}
	var sent atomic.Int64
	parallel(len(plain), func(i int) { sent.Add(int64(s.pull(ctx, plain[i], nil))) })
	if len(plain) > 0 {
		s.log.Info("xmpp: caught up", "reason", reason, "feeds", len(plain), "items_sent", sent.Load())
	}
}

// parallel runs f(0) … f(n-1), catchUpParallel at a time, and returns
// once all have.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, catchUpParallel)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// pull queues notifications of the items of a plain feed published (or
// edited) since the node's cursor, oldest first, and moves the cursor on.
// At most catch_up_max items go out at once: when more are new (after a
// long stop, say), the oldest are skipped and the loss is logged. A feed
// without a cursor starts at the first of ids (the publishes and edits
// that woke the dispatcher) or, without one, at its newest item. It
// returns the number of items queued.
func (s *service) pull(ctx context.Context, feed string, ids []string) int {
	if len(s.recipients(feed)) == 0 {
		return 0
	}
	firstID := ""
	if len(ids) > 0 {
		firstID = ids[0]
	}
	nc, err := s.lockCursor(ctx, feed, firstID)
	if err != nil {
		s.log.Warn("xmpp: start the notification cursor", "feed", feed, "err", err)
		return 0
	}
	defer nc.mu.Unlock()
	to := s.recipients(feed) // under the node's lock: see subscribe
	m := s.cursors.pulledOf(nc)
	store := s.hub.Store
	budget, sent := s.cfg.CatchUpMax, 0
	start := m
	cur, checked := m.cursor(), false
	for budget > 0 {
		limit := min(budget, pullBatch)
		page, err := store.Page(ctx, feed, thoonk.PageRequest{Before: &cur, Limit: limit})
		if err != nil {
			s.log.Warn("xmpp: read new items", "feed", feed, "err", err)
			break
		}
		// the items newer than the page's are new; in the page, those of
		// the mark's millisecond may have been notified already
		fresh := page.Start + int64(limit)
		for _, it := range page.Items {
			if m.has(it) {
				fresh--
			}
		}
		if !checked && page.Start > 0 && fresh > int64(budget) {
			// more new items than catch_up_max: start at the newest of
			// those left out (at index budget in newest-first order)
			checked = true
			missed := fresh - int64(budget)
			at, err := store.Page(ctx, feed, thoonk.PageRequest{Offset: int64(budget), Limit: 1})
			if err != nil {
				s.log.Warn("xmpp: read new items", "feed", feed, "err", err)
				break
			}
			if len(at.Items) == 0 {
				break // the feed shrank meanwhile: the next pull looks again
			}
			m = markOf(at.Items)
			cur = m.cursor()
			s.log.Warn("xmpp: more new items than catch_up_max; subscribers get the newest, the oldest are skipped",
				"feed", feed, "skipped", missed, "catch_up_max", s.cfg.CatchUpMax)
			continue
		}
		checked = true
		for i := len(page.Items) - 1; i >= 0; i-- {
			it := page.Items[i]
			if m.has(it) {
				continue
			}
			m = m.next(it)
			at := m
			s.notify.push(feed, s.itemEvent(feed, it.ID, it.Data), to, func() { s.cursors.delivered(feed, nc, at) })
			nc.noteSent(it.ID)
			sent++
			budget--
		}
		if len(page.Items) == 0 || !page.HasPrev() {
			break
		}
		cur = page.Items[0].Cursor() // the next page: the items newer than this one
	}
	s.cursors.setPulled(feed, nc, m)
	return sent + s.pullBehind(ctx, feed, nc, start, ids, to)
}

// pullBehind notifies the items of ids that Redis placed before the
// cursor's start, which pull cannot reach: another writer whose clock is
// behind published them (Thoonk writers score items with their own
// clocks). Such an item is notified from its current content, once, and
// the cursor stays where it is. Ids notified lately are skipped without
// a read, so in the usual case this costs nothing.
func (s *service) pullBehind(ctx context.Context, feed string, nc *nodeCursor, start mark, ids []string, to []string) int {
	startScore, err := strconv.ParseFloat(start.Hint, 64)
	if err != nil {
		return 0
	}
	sent := 0
	for _, id := range ids {
		if nc.sentLately(id) {
			continue
		}
		it, err := s.hub.Store.Item(ctx, feed, id)
		if err != nil {
			if !errors.Is(err, thoonk.ErrNotFound) {
				s.log.Warn("xmpp: read an item placed before the cursor", "feed", feed, "id", id, "err", err)
			}
			continue // retracted meanwhile
		}
		score, err := strconv.ParseFloat(it.Cursor().Hint, 64)
		if err != nil || score >= startScore {
			continue // within pull's reach: notified by it, or skipped on purpose
		}
		s.notify.push(feed, s.itemEvent(feed, it.ID, it.Data), to, nil)
		nc.noteSent(it.ID)
		sent++
	}
	return sent
}

// lockCursor returns feed's cursor (see startCursor) with its lock held.
func (s *service) lockCursor(ctx context.Context, feed, firstID string) (*nodeCursor, error) {
	for {
		nc, _, err := s.startCursor(ctx, feed, firstID)
		if err != nil {
			return nil, err
		}
		nc.mu.Lock()
		if cur, _, ok := s.cursors.pulled(feed); ok && cur == nc {
			return nc, nil
		}
		nc.mu.Unlock() // dropped before it was locked: the feed had no subscriber
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// startCursor returns feed's cursor, starting one if it has none: just
// before the item firstID when it is given and still there, else at the
// feed's newest item (what a new subscriber gets on subscribing).
func (s *service) startCursor(ctx context.Context, feed, firstID string) (*nodeCursor, mark, error) {
	if nc, m, ok := s.cursors.pulled(feed); ok {
		return nc, m, nil
	}
	store := s.hub.Store
	if firstID != "" {
		if it, err := store.Item(ctx, feed, firstID); err == nil && it.Index >= 0 {
			nc, m := s.cursors.start(feed, mark{Hint: it.Cursor().Hint})
			return nc, m, nil
		}
	}
	page, err := store.Page(ctx, feed, thoonk.PageRequest{Limit: pullBatch})
	if err != nil {
		return nil, mark{}, err
	}
	nc, m := s.cursors.start(feed, markOf(page.Items))
	return nc, m, nil
}
