package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

const (
	// eventQueue bounds the feed events waiting for the dispatcher; on
	// overflow core replaces them with a resync (see thoonk.Subscription).
	eventQueue = 8192
	// catchUpParallel bounds the feeds a catch-up reads at once.
	catchUpParallel = 32
)

// dispatch turns journal events into notifications until ctx ends. It
// first catches up (the changes after each node's cursor, see pull), then
// queues each change as it comes; it never waits for the network:
// notifications are queued for the notifier.
//
// Every change to a feed is an entry of its journal, announced in order,
// with its revision. A node's cursor is the revision of the last change
// queued for its subscribers: a live change after it is queued and moves
// it on, one at or before it was queued already (by a catch-up). After
// lost events (a resync) or at a start, pull reads the journal after the
// cursor. So retractions, edits, moves and sorted feeds are caught up
// like publishes, whoever made the change and whatever its writer's
// clock, each change once.
func (s *service) dispatch(ctx context.Context, events *thoonk.Subscription) {
	s.catchUp(ctx, "start")
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			return
		}
		s.onEvent(ctx, ev)
	}
}

func (s *service) onEvent(ctx context.Context, ev thoonk.Event) {
	switch {
	case ev.Type == thoonk.EventResync:
		s.resync(ctx, ev.Reason)
	case ev.Type == thoonk.EventCreate:
		delete(s.types, ev.Feed) // a feed of that name may come back with another type
	case ev.Type == thoonk.EventDelete && ev.Rev == "":
		s.feedGone(ctx, ev.Feed) // the registry's delete (its journal entry is skipped)
	case ev.Rev != "":
		s.change(ctx, ev)
	}
}

// change queues one live journal event for the node's subscribers, unless
// a catch-up queued it already.
func (s *service) change(ctx context.Context, ev thoonk.Event) {
	if !s.feeds.Allows(ev.Feed) {
		return
	}
	nc, ok := s.cursors.get(ev.Feed)
	if !ok {
		if len(s.subs.subscribers(ev.Feed)) == 0 {
			return // no subscriber (a subscribe starts the cursor)
		}
		nc = s.cursors.start(ev.Feed, thoonk.RevStart) // a subscriber without one: from this change on
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if cur, ok := s.cursors.get(ev.Feed); !ok || cur != nc {
		return // dropped meanwhile: its last subscriber left
	}
	if !thoonk.RevBefore(s.cursors.pulledOf(nc), ev.Rev) {
		return // queued by a catch-up already
	}
	s.queueChange(ctx, nc, ev, s.recipients(ev.Feed))
	s.cursors.setPulled(ev.Feed, nc, ev.Rev)
}

// queueChange queues the notification of one change (nc's lock held);
// once every recipient was sent it (or at once, when the change notifies
// nobody), the node's sent cursor moves to the change.
//
// A publish or edit notifies the item with the content the journal kept;
// an item too large to journal is read from the feed, and notified only
// if it still has the change's content (a later change notifies the
// newer one). A move notifies the item with its new position (attribute
// position, see itemTokens). A retraction requested without notify goes
// unannounced, as does a feed's delete entry (the registry's delete event
// notifies that).
func (s *service) queueChange(ctx context.Context, nc *nodeCursor, ev thoonk.Event, to []string) {
	feed, rev := ev.Feed, ev.Rev
	sent := func() { s.cursors.delivered(feed, nc, rev) }
	var body []xml.Token
	switch ev.Type {
	case thoonk.EventPublish, thoonk.EventEdit, thoonk.EventPosition:
		data := ev.Item
		if data == nil || ev.Type == thoonk.EventPosition {
			it, err := s.hub.Store.Item(ctx, feed, ev.ID)
			switch {
			case err != nil && !errors.Is(err, thoonk.ErrNotFound):
				s.log.Warn("xmpp: read a changed item", "feed", feed, "id", ev.ID, "err", err)
			case err == nil && (!ev.Large || thoonk.ContentSumHex(it.Data) == ev.Sum):
				data = it.Data
			}
		}
		if data != nil {
			body = s.itemEvent(feed, itemView{id: ev.ID, data: data, rev: rev, position: ev.Position})
		}
	case thoonk.EventRetract:
		if !s.quiet.take(feed, ev.ID) {
			body = retractEvent(s.node(feed), ev.ID)
		}
	}
	if body == nil {
		to = nil
	}
	s.notify.push(feed, body, to, sent)
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
// reloaded from Redis and every node with subscribers is caught up from
// its feed's journal.
func (s *service) resync(ctx context.Context, reason thoonk.ResyncReason) {
	if err := s.subs.load(ctx); err != nil {
		s.log.Warn("xmpp: reload subscriptions after resync", "err", err)
	}
	clear(s.types)
	s.catchUp(ctx, reason.String())
}

// catchUp reads the journal of every feed with subscribers from its
// node's cursor (see pull); a subscribed feed that no longer exists is
// notified as deleted. The feeds are read catchUpParallel at a time, so
// that their reads share round trips (the store pipelines concurrent
// commands).
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
	var live []string
	for i, feed := range feeds {
		switch err := errs[i]; {
		case errors.Is(err, thoonk.ErrFeedNotFound):
			s.feedGone(ctx, feed) // deleted while its events were lost
		case err != nil:
			s.log.Warn("xmpp: catch up: read feed type", "feed", feed, "err", err)
		default:
			s.types[feed] = types[i]
			live = append(live, feed)
		}
	}
	var sent atomic.Int64
	parallel(len(live), func(i int) { sent.Add(int64(s.pull(ctx, live[i]))) })
	if n := sent.Load(); n > 0 {
		s.log.Info("xmpp: caught up", "reason", reason, "feeds", len(live), "changes_sent", n)
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

// pull queues the changes of feed's journal after its node's cursor,
// oldest first, and moves the cursor on; it returns how many it queued.
// A node without a cursor starts at the journal's end (nothing to catch
// up). At most catch_up_max changes go out at once: when more are new
// (after a long stop, say), the oldest are skipped and the number is
// logged. When the journal no longer holds the cursor (trimmed, or lost),
// the subscribers get the feed's newest catch_up_max items instead.
func (s *service) pull(ctx context.Context, feed string) int {
	nc, err := s.lockCursor(ctx, feed)
	if err != nil {
		s.log.Warn("xmpp: start the notification cursor", "feed", feed, "err", err)
		return 0
	}
	defer nc.mu.Unlock()
	to := s.recipients(feed) // under the node's lock: see subscribe
	kept, missed, after, err := s.hub.Store.Journal(feed).Newest(ctx, s.cursors.pulledOf(nc), s.cfg.CatchUpMax, nil)
	var gap *thoonk.GapError
	switch {
	case errors.As(err, &gap):
		return s.pullNewest(ctx, nc, feed, gap, to)
	case err != nil:
		s.log.Warn("xmpp: read the journal", "feed", feed, "err", err) // what was read goes out; the next catch-up reads on
	}
	if skipped := missed - len(kept); skipped > 0 {
		s.log.Warn("xmpp: more changes than catch_up_max; subscribers get the newest, the oldest are skipped",
			"feed", feed, "skipped", skipped, "catch_up_max", s.cfg.CatchUpMax)
	}
	for _, e := range kept {
		s.queueChange(ctx, nc, e.Event(feed), to)
	}
	s.cursors.setPulled(feed, nc, after)
	return len(kept)
}

// pullNewest catches up a node whose cursor the journal no longer holds:
// its subscribers get the feed's newest catch_up_max items (what they may
// have missed among them is unknown), and the cursor moves to the
// journal's end, read first so that no change after it is missed.
func (s *service) pullNewest(ctx context.Context, nc *nodeCursor, feed string, gap *thoonk.GapError, to []string) int {
	last, err := s.hub.Store.Journal(feed).Last(ctx)
	if err != nil {
		s.log.Warn("xmpp: read the journal", "feed", feed, "err", err)
		return 0
	}
	items, err := s.newestItems(ctx, feed, s.cfg.CatchUpMax)
	if err != nil {
		s.log.Warn("xmpp: read the newest items", "feed", feed, "err", err)
		return 0
	}
	s.log.Warn("xmpp: the changes missed are no longer in the journal; subscribers get the newest items",
		"feed", feed, "reason", gap.Reason, "items", len(items))
	for _, it := range items {
		s.notify.push(feed, s.itemEvent(feed, itemView{id: it.ID, data: it.Data, rev: it.Rev}), to, nil)
	}
	s.cursors.setPulled(feed, nc, last)
	s.notify.push(feed, nil, nil, func() { s.cursors.delivered(feed, nc, last) })
	return len(items)
}

// newestItems returns up to n of a feed's newest items in the node's
// order (oldest first on a plain feed; the last n in position order on a
// sorted one).
func (s *service) newestItems(ctx context.Context, feed string, n int) ([]thoonk.Item, error) {
	store := s.hub.Store
	first, err := store.Page(ctx, feed, thoonk.PageRequest{Limit: min(n, thoonk.MaxPageSize)})
	if err != nil || first.Type == thoonk.TypeFeed {
		slices.Reverse(first.Items)
		return first.Items, err
	}
	if first.Total <= int64(len(first.Items)) {
		return first.Items, nil
	}
	p, err := store.Page(ctx, feed, thoonk.PageRequest{Offset: max(first.Total-int64(n), 0), Limit: n})
	return p.Items, err
}

// lockCursor returns feed's cursor with its lock held, starting one at the
// journal's end when the feed has none.
func (s *service) lockCursor(ctx context.Context, feed string) (*nodeCursor, error) {
	for {
		nc, ok := s.cursors.get(feed)
		if !ok {
			last, err := s.hub.Store.Journal(feed).Last(ctx)
			if err != nil {
				return nil, err
			}
			nc = s.cursors.start(feed, last)
		}
		nc.mu.Lock()
		if cur, ok := s.cursors.get(feed); ok && cur == nc {
			return nc, nil
		}
		nc.mu.Unlock() // dropped before it was locked: the feed had no subscriber
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}
