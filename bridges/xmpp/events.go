package xmpp

import (
	"context"
	"maps"
	"slices"

	"github.com/feedbridge/feedbridge/core"
)

// eventQueue bounds the feed events waiting for the dispatcher; on
// overflow core replaces them with a resync (see core.Subscription).
const eventQueue = 8192

// dispatch turns feed events into notifications until ctx ends. It never
// waits for the network: notifications are queued for the notifier.
func (s *service) dispatch(ctx context.Context, events *core.Subscription) {
	for {
		ev, err := events.Next(ctx)
		if err != nil {
			return
		}
		s.onEvent(ctx, ev)
	}
}

func (s *service) onEvent(ctx context.Context, ev core.Event) {
	switch ev.Type {
	case core.EventPublish, core.EventEdit:
		to := s.recipients(ev.Feed)
		if len(to) == 0 {
			return
		}
		s.remember(ev.Feed, ev.ID)
		s.notify.push(ev.Feed, s.itemEvent(ev.Feed, ev.ID, ev.Item), to)
	case core.EventRetract:
		s.notify.push(ev.Feed, retractEvent(s.node(ev.Feed), ev.ID), s.recipients(ev.Feed))
	case core.EventDelete:
		s.notify.push(ev.Feed, deleteEvent(s.node(ev.Feed)), s.recipients(ev.Feed))
		s.remember(ev.Feed, "")
		if err := s.subs.remove(ctx, ev.Feed); err != nil {
			s.log.Warn("xmpp: drop the subscriptions of a deleted feed", "feed", ev.Feed, "err", err)
		}
	case core.EventResync:
		s.resync(ctx, ev.Reason)
	}
}

// recipients returns the subscribers of feed that may still read it: the
// ACL is asked again for every notification.
func (s *service) recipients(feed string) []string {
	if !s.feeds.Allows(feed) {
		return nil
	}
	return slices.DeleteFunc(s.subs.subscribers(feed), func(j string) bool {
		return !s.hub.ACL.Allowed(core.Actor{Protocol: "xmpp", ID: bareOf(j)}, feed, core.OpRead)
	})
}

// remember records the last publish seen on feed ("" forgets it).
func (s *service) remember(feed, id string) {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if id == "" {
		delete(s.last, feed)
	} else {
		s.last[feed] = id
	}
}

// resync runs after core reports that events may have been lost (Redis
// reconnected, or the event queue overflowed): the subscriptions are
// reloaded from Redis, and on plain feeds the subscribers receive the
// items published after the last one this process saw, oldest first (at
// most queue_size of them). Retractions lost meanwhile cannot be known.
func (s *service) resync(ctx context.Context, reason core.ResyncReason) {
	if err := s.subs.load(ctx); err != nil {
		s.log.Warn("xmpp: reload subscriptions after resync", "err", err)
	}
	s.lastMu.Lock()
	last := maps.Clone(s.last)
	s.lastMu.Unlock()
	if len(last) == 0 {
		return
	}
	caught := 0
	for feed, id := range last {
		caught += s.catchUp(ctx, feed, id)
	}
	s.log.Info("xmpp: resynced after lost events", "reason", reason, "feeds", len(last), "items_resent", caught)
}

// catchUp queues the items of a plain feed newer than lastID.
func (s *service) catchUp(ctx context.Context, feed, lastID string) int {
	to := s.recipients(feed)
	if len(to) == 0 {
		return 0
	}
	if typ, err := s.hub.Store.Type(ctx, feed); err != nil || typ != core.TypeFeed {
		return 0
	}
	page, err := s.hub.Store.Page(ctx, feed, core.PageRequest{Limit: min(s.cfg.QueueSize, core.MaxPageSize)})
	if err != nil {
		s.log.Warn("xmpp: catch up after resync", "feed", feed, "err", err)
		return 0
	}
	newer := page.Items
	if i := slices.IndexFunc(newer, func(it core.Item) bool { return it.ID == lastID }); i >= 0 {
		newer = newer[:i]
	}
	for i := len(newer) - 1; i >= 0; i-- {
		it := newer[i]
		s.notify.push(feed, s.itemEvent(feed, it.ID, it.Data), to)
	}
	if len(newer) > 0 {
		s.remember(feed, newer[0].ID)
	}
	return len(newer)
}
