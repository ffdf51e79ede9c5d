package core

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Journaler keeps every feed's journal complete (see thoonk.Journal):
// changes made through feedbridge are journaled as they are made; this
// journals what other Thoonk writers (thoonk.py, thoonk.js, any client
// without the scripts) change, from their events, reconciles every feed
// after any moment events may have been missed (the listener reconnected,
// its queue overflowed, or it starts), and trims journals by age. Its
// steps are idempotent, so several processes may run it, but one per
// fleet is enough (see Fleet).
type Journaler struct {
	s   *thoonk.Store
	l   *thoonk.Listener
	log *slog.Logger
	// TrimEvery is how often journals are trimmed by age.
	TrimEvery time.Duration

	observed, reconciled, trimmed counter
}

// counter is a count a metric reads.
type counter struct{ n atomic.Uint64 }

// NewJournaler returns a journaler for the store's feeds.
func NewJournaler(s *thoonk.Store, l *thoonk.Listener, log *slog.Logger) *Journaler {
	return &Journaler{s: s, l: l, log: log, TrimEvery: time.Minute}
}

// matchWindow bounds how long the journaler waits for the journal's own
// announcement of a change before it takes the change for another
// writer's. A script announces the schema's event and its journal entry
// together, nothing else between them (a sorted-feed insert: publish,
// position, then the entry), so the wait normally ends at the next
// message.
const matchWindow = 20 * time.Millisecond

// pendingChange is a schema event waiting for its journal announcement.
type pendingChange struct {
	ev  thoonk.Event
	key string
	at  time.Time
}

// changeKey identifies a change by feed, id and what it made the item:
// its content sum, a retract, or a position.
func changeKey(ev thoonk.Event) string {
	what := ""
	switch ev.Type {
	case thoonk.EventPublish, thoonk.EventEdit:
		what = "c" + ev.Sum
		if !ev.Large {
			what = "c" + thoonk.ContentSumHex(ev.Item)
		}
	case thoonk.EventRetract:
		what = "r"
	case thoonk.EventPosition:
		what = "p" + ev.Position
	}
	return ev.Feed + "\x00" + ev.ID + "\x00" + what
}

// Run journals until ctx ends.
func (j *Journaler) Run(ctx context.Context) error {
	sub := j.l.SubscribeWith(thoonk.SubscribeOptions{Queue: 8192, Both: true})
	defer sub.Close()
	j.reconcileAll(ctx) // what changed while no journaler ran
	trim := time.NewTicker(j.TrimEvery)
	defer trim.Stop()
	tick := time.NewTicker(matchWindow)
	defer tick.Stop()
	var pending []pendingChange // the schema's events not matched yet, oldest first
	observe := func(p pendingChange) {
		rev, err := j.s.Observe(ctx, p.ev) // another writer's: the script re-checks
		if err != nil && ctx.Err() == nil {
			j.log.Warn("journal: observe a change", "feed", p.ev.Feed, "id", p.ev.ID, "err", err)
		}
		if rev != "" {
			j.observed.n.Add(1)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trim.C:
			j.trimAll(ctx)
		case <-tick.C:
		case <-sub.Ready():
		}
		for ev, ok := sub.TryNext(); ok; ev, ok = sub.TryNext() {
			switch {
			case ev.Type == thoonk.EventResync:
				pending = pending[:0]
				j.reconcileAll(ctx)
			case ev.Rev != "": // a journal entry: it settles the changes it journaled
				keys := []string{changeKey(ev)}
				if ev.Type == thoonk.EventPublish && ev.Position != "" { // a sorted insert
					keys = append(keys, changeKey(thoonk.Event{Type: thoonk.EventPosition, Feed: ev.Feed, ID: ev.ID, Position: ev.Position}))
				}
				pending = slices.DeleteFunc(pending, func(p pendingChange) bool { return slices.Contains(keys, p.key) })
			case ev.Type == thoonk.EventPublish, ev.Type == thoonk.EventEdit, ev.Type == thoonk.EventRetract, ev.Type == thoonk.EventPosition:
				// a new change: those before it that no entry followed are
				// another writer's (but a sorted insert's publish waits for
				// its position event)
				kept := pending[:0]
				for _, p := range pending {
					if ev.Type == thoonk.EventPosition && p.ev.Type == thoonk.EventPublish && p.ev.Feed == ev.Feed && p.ev.ID == ev.ID {
						kept = append(kept, p)
						continue
					}
					observe(p)
				}
				pending = append(kept, pendingChange{ev: ev, key: changeKey(ev), at: time.Now()})
			}
		}
		now := time.Now()
		kept := pending[:0]
		for _, p := range pending {
			if now.Sub(p.at) < matchWindow {
				kept = append(kept, p)
				continue
			}
			observe(p)
		}
		pending = kept
	}
}

// reconcileAll reconciles every plain and sorted feed.
func (j *Journaler) reconcileAll(ctx context.Context) {
	feeds, err := j.s.Feeds(ctx)
	if err != nil {
		if ctx.Err() == nil {
			j.log.Warn("journal: list feeds to reconcile", "err", err)
		}
		return
	}
	total := 0
	for _, f := range feeds {
		n, err := j.s.Reconcile(ctx, f)
		if err != nil && ctx.Err() == nil {
			j.log.Warn("journal: reconcile", "feed", f, "err", err)
		}
		total += n
	}
	j.reconciled.n.Add(uint64(total))
	if total > 0 {
		j.log.Info("journal: reconciled changes made while events were missed", "entries", total)
	}
}

// trimAll trims every feed's journal by age.
func (j *Journaler) trimAll(ctx context.Context) {
	feeds, err := j.s.Feeds(ctx)
	if err != nil {
		return
	}
	for _, f := range feeds {
		n, err := j.s.TrimJournal(ctx, f)
		if err != nil && ctx.Err() == nil {
			j.log.Warn("journal: trim", "feed", f, "err", err)
		}
		j.trimmed.n.Add(uint64(n))
	}
}

// JournalerStats are counters since the journaler was created.
type JournalerStats struct {
	// Observed counts changes of other writers journaled from their events.
	Observed uint64
	// Reconciled counts changes journaled by reconciliations.
	Reconciled uint64
	// Trimmed counts entries dropped by age.
	Trimmed uint64
}

// Stats returns the journaler's counters.
func (j *Journaler) Stats() JournalerStats {
	return JournalerStats{Observed: j.observed.n.Load(), Reconciled: j.reconciled.n.Load(), Trimmed: j.trimmed.n.Load()}
}
