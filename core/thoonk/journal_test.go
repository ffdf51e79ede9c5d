package thoonk_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

var journaled = thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000, MaxItemBytes: 16, MaxAge: time.Hour}}

// entryString renders an entry for comparisons: "type id item|sum pos".
func entryString(e thoonk.Entry) string {
	s := e.Type.String() + " " + e.ID
	if e.Item != nil {
		s += " " + string(e.Item)
	}
	if e.Sum != "" {
		s += " sum:" + e.Sum
	}
	if e.Position != "" {
		s += " @" + e.Position
	}
	return s
}

func readAll(t *testing.T, s *thoonk.Store, feed string, after ...string) ([]string, []thoonk.Entry) {
	t.Helper()
	from := thoonk.RevStart
	if len(after) > 0 {
		from = after[0]
	}
	es, _, err := s.Journal(feed).Read(thoonktest.Ctx(t), from, 1000)
	thoonktest.Must(t, err)
	var out []string
	for _, e := range es {
		out = append(out, entryString(e))
	}
	return out, es
}

// Every change made through a journaled store is in the feed's journal,
// in order, with increasing revisions, and the items carry the revision
// of their last change.
func TestJournalRecordsEveryChange(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, map[string]string{"max_length": "2"}))
		thoonktest.Must(t, s.Create(ctx, "list", thoonk.TypeSorted, nil))
		f, l := s.Feed("news"), s.Sorted("list")
		_, _ = f.Publish(ctx, []byte("A"), "a")
		_, _ = f.Publish(ctx, []byte("A2"), "a")
		_, _ = f.Publish(ctx, []byte("a large item, over sixteen bytes"), "b")
		_, _ = f.Publish(ctx, []byte("C"), "c") // trims a
		thoonktest.Must(t, f.Retract(ctx, "b"))
		got, es := readAll(t, s, "news", thoonk.RevStart)
		want := []string{"publish a A", "edit a A2", "publish b sum:" + thoonk.ContentSumHex([]byte("a large item, over sixteen bytes")),
			"retract a", "publish c C", "retract b"}
		if !slices.Equal(got, want) {
			t.Fatalf("journal\n got %q\nwant %q", got, want)
		}
		for i := 1; i < len(es); i++ {
			if !thoonk.RevBefore(es[i-1].Rev, es[i].Rev) {
				t.Fatalf("revisions out of order: %s then %s", es[i-1].Rev, es[i].Rev)
			}
		}
		it, err := f.Item(ctx, "c")
		thoonktest.Must(t, err)
		if it.Rev != es[4].Rev {
			t.Fatalf("item c rev %q, want %q", it.Rev, es[4].Rev)
		}
		if it, err := s.ItemOf(ctx, "news", thoonk.TypeFeed, "c"); err != nil || it.Rev != es[4].Rev || string(it.Data) != "C" {
			t.Fatalf("ItemOf c: %+v %v, want rev %q", it, err, es[4].Rev)
		}
		p, err := f.Page(ctx, thoonk.PageRequest{})
		thoonktest.Must(t, err)
		if len(p.Items) != 1 || p.Items[0].Rev != es[4].Rev {
			t.Fatalf("page %+v", p.Items)
		}
		// reading on from a revision returns what follows it
		if got, _ := readAll(t, s, "news", es[3].Rev); !slices.Equal(got, want[4:]) {
			t.Fatalf("after %s: %q", es[3].Rev, got)
		}

		one, _ := l.Append(ctx, []byte("1"))
		two, _ := l.Prepend(ctx, []byte("2"))
		thoonktest.Must(t, l.Edit(ctx, one, []byte("1b")))
		thoonktest.Must(t, l.Move(ctx, one, thoonk.Position{Kind: thoonk.PosBegin}))
		thoonktest.Must(t, l.Retract(ctx, two))
		got, _ = readAll(t, s, "list", thoonk.RevStart)
		want = []string{"publish 1 1 @:end", "publish 2 2 @begin:", "edit 1 1b", "position 1 @begin:", "retract 2"}
		if !slices.Equal(got, want) {
			t.Fatalf("sorted journal\n got %q\nwant %q", got, want)
		}

		// a delete is journaled; a new feed of the name goes on from there
		thoonktest.Must(t, s.Delete(ctx, "news"))
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		_, _ = f.Publish(ctx, []byte("D"), "d")
		got, _ = readAll(t, s, "news", es[5].Rev)
		if !slices.Equal(got, []string{"delete ", "publish d D"}) {
			t.Fatalf("after delete: %q", got)
		}
		if ttl, _ := b.RDB.PTTL(ctx, "feedbridge.journal:news").Result(); ttl > 0 {
			t.Fatalf("a re-created feed's journal still expires in %s", ttl)
		}
	})
}

// A read the journal cannot answer exactly says so: entries trimmed by
// the count bound or by age, a journal lost and begun again, a revision
// from elsewhere.
func TestJournalGaps(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 10, MaxItemBytes: 100}})
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		f := s.Feed("news")
		_, _ = f.Publish(ctx, []byte("first"), "first")
		_, es := readAll(t, s, "news", thoonk.RevStart)
		first := es[0].Rev
		for i := range 80 {
			_, _ = f.Publish(ctx, []byte("x"), string(rune('a'+i%26))+"x")
		}
		_, _, err := s.Journal("news").Read(ctx, first, 10)
		var gap *thoonk.GapError
		if !errors.As(err, &gap) || gap.Reason != "trimmed" {
			t.Fatalf("read after a trimmed revision: %v", err)
		}
		if _, _, err := s.Journal("news").Read(ctx, thoonk.RevStart, 10); !errors.As(err, &gap) || gap.Reason != "trimmed" {
			t.Fatalf("read from the start of a trimmed journal: %v", err)
		}
		last, err := s.Journal("news").Last(ctx)
		thoonktest.Must(t, err)
		n, _ := b.RDB.XLen(ctx, "feedbridge.journal:news").Result()
		if n < 10 || n > 10+64 {
			t.Fatalf("journal holds %d entries, bound 10", n)
		}
		// the journal is lost (Redis restarted without persistence) and
		// begins again: a revision from before is unknown, not resumed
		thoonktest.Must(t, b.RDB.Del(ctx, "feedbridge.journal:news", "feedbridge.journal.meta:news", "feedbridge.revs:news").Err())
		time.Sleep(2 * time.Millisecond)
		_, _ = f.Publish(ctx, []byte("y"), "y")
		if _, _, err := s.Journal("news").Read(ctx, last, 10); !errors.As(err, &gap) || gap.Reason != "unknown" {
			t.Fatalf("read after a lost journal: %v", err)
		}
		for _, bad := range []string{"", "x", "99999999999999-0"} {
			if _, _, err := s.Journal("news").Read(ctx, bad, 10); !errors.Is(err, thoonk.ErrGap) {
				t.Fatalf("read after %q: %v", bad, err)
			}
		}
	})
}

// Entries older than the journal's age bound are trimmed, and a read
// from before them is a gap.
func TestJournalTrimByAge(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	s := b.StoreWith(t, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 100, MaxItemBytes: 100, MaxAge: 300 * time.Millisecond}})
	thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
	_, _ = s.Feed("news").Publish(ctx, []byte("old"), "old")
	_, es := readAll(t, s, "news", thoonk.RevStart)
	time.Sleep(400 * time.Millisecond)
	_, _ = s.Feed("news").Publish(ctx, []byte("new"), "new")
	n, err := s.TrimJournal(ctx, "news")
	thoonktest.Must(t, err)
	if n != 1 {
		t.Fatalf("trimmed %d entries, want 1", n)
	}
	if _, _, err := s.Journal("news").Read(ctx, thoonk.RevStart, 10); !errors.Is(err, thoonk.ErrGap) {
		t.Fatalf("read from the start after an age trim: %v", err)
	}
	if got, _ := readAll(t, s, "news", es[0].Rev); !slices.Equal(got, []string{"publish new new"}) {
		t.Fatalf("read after the last trimmed entry: %q", got)
	}
}

// Journal announcements reach journal subscriptions as events carrying
// the revision, and only those.
func TestJournalEvents(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		l := thoonktest.Listen(t, s, thoonk.ListenerOptions{})
		jsub := l.SubscribeWith(thoonk.SubscribeOptions{Feed: "news", Journal: true})
		defer jsub.Close()
		plain := l.SubscribeFeed("news", 0)
		defer plain.Close()
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		_, _ = s.Feed("news").Publish(ctx, []byte("hello"), "h")
		_, _ = s.Feed("news").Publish(ctx, []byte("a large item, over sixteen bytes"), "h")
		_, es := readAll(t, s, "news", thoonk.RevStart)
		var got []thoonk.Event
		for len(got) < 2 {
			if ev := thoonktest.Next(t, jsub); ev.Type == thoonk.EventPublish || ev.Type == thoonk.EventEdit {
				got = append(got, ev)
			}
		}
		if got[0].Rev != es[0].Rev || string(got[0].Item) != "hello" || got[1].Rev != es[1].Rev || !got[1].Large || got[1].Item != nil {
			t.Fatalf("journal events %+v", got)
		}
		for range 4 { // create, config, publish, edit: no journal events
			if ev := thoonktest.Next(t, plain); ev.Rev != "" {
				t.Fatalf("journal event on a plain subscription: %+v", ev)
			}
		}
	})
}

// Changes by another Thoonk writer (exactly as thoonk.py makes them) are
// journaled once each when observed, and stale or repeated observations
// journal nothing; a reconciliation finds what was never observed.
func TestObserveAndReconcileForeignWriters(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		l := thoonktest.Listen(t, s, thoonk.ListenerOptions{})
		sub := l.SubscribeFeed("news", 0)
		defer sub.Close()
		observe := func() {
			t.Helper()
			for {
				ev := thoonktest.Next(t, sub)
				if ev.Type == thoonk.EventPublish || ev.Type == thoonk.EventEdit || ev.Type == thoonk.EventRetract {
					_, err := s.Observe(ctx, ev)
					thoonktest.Must(t, err)
					return
				}
			}
		}
		_, err := thoonktest.PyPublish(ctx, b.RDB, "news", "p", []byte("py"))
		thoonktest.Must(t, err)
		observe()
		observe2 := func(ev thoonk.Event) { _, _ = s.Observe(ctx, ev) }
		observe2(thoonk.Event{Type: thoonk.EventPublish, Feed: "news", ID: "p", Item: []byte("py")}) // again: nothing
		_, _ = thoonktest.PyPublish(ctx, b.RDB, "news", "p", []byte("py2"))
		observe2(thoonk.Event{Type: thoonk.EventEdit, Feed: "news", ID: "p", Item: []byte("py")}) // stale: nothing
		observe()
		// our own publish is journaled as it is made; its event observed changes nothing
		_, _ = s.Feed("news").Publish(ctx, []byte("ours"), "o")
		observe()
		thoonktest.Must(t, thoonktest.PyRetract(ctx, b.RDB, "news", "p"))
		observe()
		got, _ := readAll(t, s, "news", thoonk.RevStart)
		want := []string{"publish p py", "edit p py2", "publish o ours", "retract p"}
		if !slices.Equal(got, want) {
			t.Fatalf("journal\n got %q\nwant %q", got, want)
		}
		// while nobody observed: a new item, an edit, a retract
		_, _ = thoonktest.PyPublish(ctx, b.RDB, "news", "q", []byte("q"))
		_, _ = thoonktest.PyPublish(ctx, b.RDB, "news", "o", []byte("ours, edited"))
		n, err := s.Reconcile(ctx, "news")
		thoonktest.Must(t, err)
		thoonktest.Must(t, thoonktest.PyRetract(ctx, b.RDB, "news", "q"))
		n2, err := s.Reconcile(ctx, "news")
		thoonktest.Must(t, err)
		got, _ = readAll(t, s, "news", thoonk.RevStart)
		if n != 2 || n2 != 1 || !slices.Equal(got[4:], []string{"publish q q", "edit o ours, edited", "retract q"}) &&
			!slices.Equal(got[4:], []string{"edit o ours, edited", "publish q q", "retract q"}) {
			t.Fatalf("reconciled %d then %d:\n%q", n, n2, got)
		}
		if n, _ := s.Reconcile(ctx, "news"); n != 0 {
			t.Fatalf("a second reconciliation journaled %d entries", n)
		}
	})
}
