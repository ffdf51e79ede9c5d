package core_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// The journaler journals what other Thoonk writers change, once each, and
// leaves alone what feedbridge's own scripts journaled already; a change
// made while it did not run is found when it starts.
func TestJournalerJournalsOtherWritersOnce(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000, MaxItemBytes: 16}})
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		_, err := thoonktest.PyPublish(ctx, b.RDB, "news", "early", []byte("while nobody journaled"))
		thoonktest.Must(t, err)
		l := thoonktest.Listen(t, s, thoonk.ListenerOptions{})
		j := core.NewJournaler(s, l, slog.New(slog.DiscardHandler))
		jctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = j.Run(jctx) }()
		defer func() { stop(); <-done }()
		waitFor(t, func() bool { return j.Stats().Reconciled == 1 })

		_, _ = thoonktest.PyPublish(ctx, b.RDB, "news", "x", []byte("python"))
		_, _ = s.Feed("news").Publish(ctx, []byte("ours"), "y")
		_, _ = s.Feed("news").Publish(ctx, []byte("ours, and over sixteen bytes"), "z")
		thoonktest.Must(t, thoonktest.PyRetract(ctx, b.RDB, "news", "x"))
		// other writers' changes are journaled from their events; one
		// already superseded when it is observed is not (its successor
		// is), so x may be skipped, publish and retract alike
		count := func() map[string]int {
			es, _, err := s.Journal("news").Read(ctx, thoonk.RevStart, 100)
			thoonktest.Must(t, err)
			n := map[string]int{}
			for _, e := range es {
				n[e.Type.String()+" "+e.ID]++
			}
			return n
		}
		waitFor(t, func() bool { n := count(); return n["publish early"]+n["publish y"]+n["publish z"] == 3 })
		time.Sleep(300 * time.Millisecond) // a duplicate, or x's entries, would show now
		n := count()
		if n["publish early"] != 1 || n["publish y"] != 1 || n["publish z"] != 1 || n["publish x"] != n["retract x"] || n["publish x"] > 1 {
			t.Fatalf("journal entries %v", n)
		}
		if st := j.Stats(); st.Observed != uint64(2*n["publish x"]) || st.Reconciled != 1 {
			t.Fatalf("stats %+v with journal %v: only x's changes are observed, early reconciled", st, n)
		}
	})
}
