package core

import (
	"context"
	"log/slog"
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

// Run journals until ctx ends.
func (j *Journaler) Run(ctx context.Context) error {
	sub := j.l.SubscribeWith(thoonk.SubscribeOptions{Queue: 8192})
	defer sub.Close()
	j.reconcileAll(ctx) // what changed while no journaler ran
	trim := time.NewTicker(j.TrimEvery)
	defer trim.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trim.C:
			j.trimAll(ctx)
		case <-sub.Ready():
		}
		for {
			ev, ok := sub.TryNext()
			if !ok {
				break
			}
			switch ev.Type {
			case thoonk.EventResync:
				j.reconcileAll(ctx)
			case thoonk.EventPublish, thoonk.EventEdit, thoonk.EventRetract, thoonk.EventPosition:
				rev, err := j.s.Observe(ctx, ev)
				if err != nil && ctx.Err() == nil {
					j.log.Warn("journal: observe a change", "feed", ev.Feed, "id", ev.ID, "err", err)
				}
				if rev != "" {
					j.observed.n.Add(1)
				}
			}
		}
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
