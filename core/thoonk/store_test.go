package thoonk_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func TestRegistry(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "team:353:member:12:tasks", thoonk.TypeSorted, map[string]string{"title": "Tasks"})
		b.Create(t, "news", thoonk.TypeFeed, nil)

		if err := s.Create(ctx, "news", thoonk.TypeJob, nil); !errors.Is(err, thoonk.ErrFeedExists) {
			t.Fatalf("second create: got %v, want ErrFeedExists", err)
		}
		if err := s.Create(ctx, "bad", thoonk.FeedType("blog"), nil); !errors.Is(err, thoonk.ErrInvalid) {
			t.Fatalf("create with unknown type: got %v, want ErrInvalid", err)
		}
		names, err := s.Feeds(ctx)
		thoonktest.Must(t, err)
		if want := []string{"news", "team:353:member:12:tasks"}; !slices.Equal(names, want) {
			t.Fatalf("feeds = %v, want %v", names, want)
		}
		typ, err := s.Type(ctx, "team:353:member:12:tasks")
		thoonktest.Must(t, err)
		if typ != thoonk.TypeSorted {
			t.Fatalf("type = %q", typ)
		}
		cfg, err := s.Config(ctx, "team:353:member:12:tasks")
		thoonktest.Must(t, err)
		if cfg["title"] != "Tasks" || cfg["type"] != "sorted_feed" {
			t.Fatalf("config = %v", cfg)
		}
		thoonktest.Must(t, s.SetConfig(ctx, "news", map[string]string{"title": "News", "max_length": "10"}))
		cfg, _ = s.Config(ctx, "news")
		if cfg["title"] != "News" || cfg["max_length"] != "10" || cfg["type"] != "feed" {
			t.Fatalf("config after set = %v", cfg)
		}
		if err := s.SetConfig(ctx, "news", map[string]string{"type": "job"}); !errors.Is(err, thoonk.ErrInvalid) {
			t.Fatalf("changing type: got %v, want ErrInvalid", err)
		}
		if _, err := s.Type(ctx, "missing"); !errors.Is(err, thoonk.ErrFeedNotFound) {
			t.Fatalf("type of missing feed: got %v", err)
		}

		_, err = s.Feed("news").Publish(ctx, []byte("x"), "1")
		thoonktest.Must(t, err)
		thoonktest.Must(t, s.Delete(ctx, "news"))
		if ok, _ := s.Exists(ctx, "news"); ok {
			t.Fatal("deleted feed still exists")
		}
		keys, _ := b.RDB.Keys(ctx, "*news*").Result()
		if len(keys) != 0 {
			t.Fatalf("keys left after delete: %v", keys)
		}
		if err := s.Delete(ctx, "news"); !errors.Is(err, thoonk.ErrFeedNotFound) {
			t.Fatalf("second delete: got %v", err)
		}
		if _, err := s.Feed("news").Publish(ctx, []byte("x"), ""); !errors.Is(err, thoonk.ErrFeedNotFound) {
			t.Fatalf("publish to deleted feed: got %v", err)
		}
	})
}

func TestWrongType(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "plain", thoonk.TypeFeed, nil)
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		_, err := s.Jobs("plain").Put(ctx, []byte("x"), thoonk.PutOptions{})
		var wt *thoonk.WrongTypeError
		if !errors.As(err, &wt) || wt.Got != thoonk.TypeFeed || wt.Want != thoonk.TypeJob || wt.Feed != "plain" {
			t.Fatalf("job put on plain feed: got %v", err)
		}
		if !strings.Contains(err.Error(), `"plain" is a feed, not a job`) {
			t.Fatalf("message does not name the feed and types: %q", err)
		}
		if _, err := s.Feed("jobs").Publish(ctx, []byte("x"), ""); !errors.Is(err, thoonk.ErrWrongType) {
			t.Fatalf("publish on job feed: got %v", err)
		}
		if _, err := s.Sorted("plain").Append(ctx, []byte("x")); !errors.Is(err, thoonk.ErrWrongType) {
			t.Fatalf("append on plain feed: got %v", err)
		}
		if _, err := s.Feed("jobs").IDs(ctx); !errors.Is(err, thoonk.ErrWrongType) {
			t.Fatalf("ids of job feed: got %v", err)
		}
		if _, err := s.Queue("jobs").Put(ctx, []byte("x"), false); !errors.Is(err, thoonk.ErrWrongType) {
			t.Fatalf("queue put on job feed: got %v", err)
		}
		// nothing was written by the refused operations
		n, _ := b.RDB.LLen(ctx, "feed.ids:jobs").Result()
		if n != 0 {
			t.Fatalf("refused operations wrote %d job ids", n)
		}
	})
}

func TestValidationRefusesBeforeRedis(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "f", thoonk.TypeFeed, nil)
		for _, id := range []string{"a\x00b", "a\r\nb", strings.Repeat("x", thoonk.MaxIDLen+1), "\xff"} {
			if _, err := s.Feed("f").Publish(ctx, []byte("x"), id); !errors.Is(err, thoonk.ErrInvalid) {
				t.Errorf("publish with id %q: got %v, want ErrInvalid", id, err)
			}
		}
		for _, name := range []string{"", "a\u202eb", "a\nb", "a\x00b"} {
			if err := s.Create(ctx, name, thoonk.TypeFeed, nil); !errors.Is(err, thoonk.ErrInvalid) {
				t.Errorf("create %q: got %v, want ErrInvalid", name, err)
			}
		}
		n, _ := b.RDB.ZCard(ctx, "feed.ids:f").Result()
		names, _ := s.Feeds(ctx)
		if n != 0 || len(names) != 1 {
			t.Fatalf("refused input changed Redis: %d ids, feeds %v", n, names)
		}
	})
}

func TestPlainFeed(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "news", thoonk.TypeFeed, nil)
		f := s.Feed("news")
		r1, err := f.Publish(ctx, []byte("one"), "")
		thoonktest.Must(t, err)
		if !r1.New || len(r1.ID) != 32 {
			t.Fatalf("publish result %+v", r1)
		}
		r2, err := f.Publish(ctx, []byte("two"), "second")
		thoonktest.Must(t, err)
		r3, err := f.Publish(ctx, []byte("two, edited"), "second")
		thoonktest.Must(t, err)
		if !r2.New || r3.New {
			t.Fatalf("publish/edit New flags: %v %v", r2.New, r3.New)
		}
		ids, err := f.IDs(ctx)
		thoonktest.Must(t, err)
		if !slices.Equal(ids, []string{r1.ID, "second"}) {
			t.Fatalf("ids = %v", ids)
		}
		got, err := f.Get(ctx, "second")
		thoonktest.Must(t, err)
		if string(got) != "two, edited" {
			t.Fatalf("get = %q", got)
		}
		many, err := f.GetMany(ctx, "second", "nope", r1.ID)
		thoonktest.Must(t, err)
		if string(many[0]) != "two, edited" || many[1] != nil || string(many[2]) != "one" {
			t.Fatalf("get many = %q", many)
		}
		all, err := f.All(ctx)
		thoonktest.Must(t, err)
		if len(all) != 2 || string(all[r1.ID]) != "one" {
			t.Fatalf("all = %q", all)
		}
		if n, _ := f.Count(ctx); n != 2 {
			t.Fatalf("count = %d", n)
		}
		if _, err := f.Get(ctx, "nope"); !errors.Is(err, thoonk.ErrItemNotFound) || !errors.Is(err, thoonk.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		thoonktest.Must(t, f.Retract(ctx, r1.ID))
		if err := f.Retract(ctx, r1.ID); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("retract twice: %v", err)
		}
		if n, _ := f.Count(ctx); n != 1 {
			t.Fatalf("count after retract = %d", n)
		}
	})
}

func TestPayloadsRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	payloads := map[string][]byte{
		"nul":     []byte("a\x00b\x00"),
		"invalid": {0xff, 0xfe, 0x00, 0xc3},
		"empty":   {},
		"big":     big,
		"json":    []byte(`{"title":"x","n":1}`),
	}
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "p", thoonk.TypeFeed, nil)
		b.Create(t, "sp", thoonk.TypeSorted, nil)
		b.Create(t, "j", thoonk.TypeJob, nil)
		for name, p := range payloads {
			_, err := s.Feed("p").Publish(ctx, p, name)
			thoonktest.Must(t, err)
			got, err := s.Feed("p").Get(ctx, name)
			thoonktest.Must(t, err)
			if !bytes.Equal(got, p) {
				t.Errorf("plain %s: round trip changed the payload", name)
			}
			id, err := s.Sorted("sp").Append(ctx, p)
			thoonktest.Must(t, err)
			got, _ = s.Sorted("sp").Get(ctx, id)
			if !bytes.Equal(got, p) {
				t.Errorf("sorted %s: round trip changed the payload", name)
			}
			_, err = s.Jobs("j").Put(ctx, p, thoonk.PutOptions{})
			thoonktest.Must(t, err)
			job, err := s.Jobs("j").Get(ctx, 0)
			thoonktest.Must(t, err)
			if !bytes.Equal(job.Item, p) {
				t.Errorf("job %s: round trip changed the payload", name)
			}
		}
	})
}

func TestMaxLength(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "short", thoonk.TypeFeed, map[string]string{"max_length": "3"})
		f := s.Feed("short")
		for i := range 6 {
			_, err := f.Publish(ctx, []byte("x"), fmt.Sprint(i))
			thoonktest.Must(t, err)
			time.Sleep(2 * time.Millisecond) // distinct publish times
		}
		ids, _ := f.IDs(ctx)
		if !slices.Equal(ids, []string{"3", "4", "5"}) {
			t.Fatalf("ids = %v, want the newest 3", ids)
		}
		// an edit of the oldest at the limit keeps every item
		_, err := f.Publish(ctx, []byte("edited"), "3")
		thoonktest.Must(t, err)
		ids, _ = f.IDs(ctx)
		if !slices.Equal(ids, []string{"4", "5", "3"}) {
			t.Fatalf("ids after edit = %v", ids)
		}
		if n, _ := b.RDB.HLen(ctx, "feed.items:short").Result(); n != 3 {
			t.Fatalf("items hash has %d entries", n)
		}
	})
}

func TestSortedFeed(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "list", thoonk.TypeSorted, nil)
		f := s.Sorted("list")
		a, _ := f.Append(ctx, []byte("a"))            // [a]
		c, _ := f.Append(ctx, []byte("c"))            // [a c]
		z, _ := f.Prepend(ctx, []byte("z"))           // [z a c]
		bb, _ := f.PublishBefore(ctx, c, []byte("b")) // [z a b c]
		d, err := f.PublishAfter(ctx, c, []byte("d")) // [z a b c d]
		thoonktest.Must(t, err)
		if a != "1" || c != "2" || z != "3" || bb != "4" || d != "5" {
			t.Fatalf("ids %s %s %s %s %s, want 1..5 from idincr", a, c, z, bb, d)
		}
		order := func() string {
			ids, err := f.IDs(ctx)
			thoonktest.Must(t, err)
			var sb strings.Builder
			for _, id := range ids {
				v, _ := f.Get(ctx, id)
				sb.Write(v)
			}
			return sb.String()
		}
		if o := order(); o != "zabcd" {
			t.Fatalf("order %q", o)
		}
		thoonktest.Must(t, f.Move(ctx, z, thoonk.Position{Kind: thoonk.PosEnd}))
		if o := order(); o != "abcdz" {
			t.Fatalf("after move end: %q", o)
		}
		thoonktest.Must(t, f.Move(ctx, d, thoonk.Position{Kind: thoonk.PosBegin}))
		if o := order(); o != "dabcz" {
			t.Fatalf("after move begin: %q", o)
		}
		thoonktest.Must(t, f.Move(ctx, z, thoonk.Position{Kind: thoonk.PosBefore, Rel: a}))
		if o := order(); o != "dzabc" {
			t.Fatalf("after move before: %q", o)
		}
		thoonktest.Must(t, f.Move(ctx, d, thoonk.Position{Kind: thoonk.PosAfter, Rel: c}))
		if o := order(); o != "zabcd" {
			t.Fatalf("after move after: %q", o)
		}
		thoonktest.Must(t, f.Edit(ctx, a, []byte("A")))
		if o := order(); o != "zAbcd" {
			t.Fatalf("after edit: %q", o)
		}
		thoonktest.Must(t, f.Retract(ctx, bb))
		if o := order(); o != "zAcd" {
			t.Fatalf("after retract: %q", o)
		}
		if err := f.Move(ctx, a, thoonk.Position{Kind: thoonk.PosBefore, Rel: "99"}); !errors.Is(err, thoonk.ErrRelativeNotFound) {
			t.Fatalf("move before missing: %v", err)
		}
		if err := f.Move(ctx, a, thoonk.Position{Kind: thoonk.PosAfter, Rel: a}); !errors.Is(err, thoonk.ErrRelativeNotFound) {
			t.Fatalf("move relative to itself: %v", err)
		}
		if _, err := f.PublishAfter(ctx, "99", []byte("x")); !errors.Is(err, thoonk.ErrRelativeNotFound) {
			t.Fatalf("publish after missing: %v", err)
		}
		if err := f.Edit(ctx, "99", []byte("x")); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("edit missing: %v", err)
		}
		if err := f.Retract(ctx, "99"); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("retract missing: %v", err)
		}
		if o := order(); o != "zAcd" {
			t.Fatalf("refused operations changed the feed: %q", o)
		}
	})
}

func TestPositionParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want thoonk.Position
	}{
		{":end", thoonk.Position{Kind: thoonk.PosEnd}},
		{"begin:", thoonk.Position{Kind: thoonk.PosBegin}},
		{":12", thoonk.Position{Kind: thoonk.PosBefore, Rel: "12"}},
		{"12:", thoonk.Position{Kind: thoonk.PosAfter, Rel: "12"}},
	} {
		got, err := thoonk.ParsePosition(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePosition(%q) = %+v, %v", tc.in, got, err)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
	for _, bad := range []string{"", "12", ":", "a\nb:"} {
		if _, err := thoonk.ParsePosition(bad); !errors.Is(err, thoonk.ErrInvalid) {
			t.Errorf("ParsePosition(%q): got %v, want ErrInvalid", bad, err)
		}
	}
}

func TestQueue(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "q", thoonk.TypeQueue, nil)
		q := s.Queue("q")
		_, _ = q.Put(ctx, []byte("first"), false)
		_, _ = q.Put(ctx, []byte("second"), false)
		_, _ = q.Put(ctx, []byte("urgent"), true)
		for _, want := range []string{"urgent", "first", "second"} {
			_, item, err := q.Get(ctx, time.Second)
			thoonktest.Must(t, err)
			if string(item) != want {
				t.Fatalf("got %q, want %q", item, want)
			}
		}
		if n, _ := b.RDB.HLen(ctx, "feed.items:q").Result(); n != 0 {
			t.Fatalf("taken items remain: %d", n)
		}
		start := time.Now()
		if _, _, err := q.Get(ctx, 200*time.Millisecond); !errors.Is(err, thoonk.ErrTimeout) {
			t.Fatalf("get on empty queue: %v", err)
		}
		if time.Since(start) < 150*time.Millisecond {
			t.Fatal("get returned before its timeout")
		}
		// a put while a getter blocks wakes it
		done := make(chan string, 1)
		go func() {
			_, item, err := q.Get(ctx, 5*time.Second)
			if err != nil {
				done <- err.Error()
				return
			}
			done <- string(item)
		}()
		time.Sleep(100 * time.Millisecond)
		_, _ = q.Put(ctx, []byte("late"), false)
		if got := <-done; got != "late" {
			t.Fatalf("blocked get returned %q", got)
		}
	})
}

func TestJobLifecycle(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "1"})
		j := s.Jobs("jobs")
		id1, err := j.Put(ctx, []byte("one"), thoonk.PutOptions{})
		thoonktest.Must(t, err)
		id2, err := j.Put(ctx, []byte("two"), thoonk.PutOptions{ID: "fixed"})
		thoonktest.Must(t, err)
		if _, err := j.Put(ctx, []byte("dup"), thoonk.PutOptions{ID: "fixed"}); !errors.Is(err, thoonk.ErrJobExists) {
			t.Fatalf("duplicate id: %v", err)
		}
		hi, _ := j.Put(ctx, []byte("high"), thoonk.PutOptions{High: true})
		avail, _ := j.Available(ctx)
		if !slices.Equal(avail, []string{hi, id1, id2}) {
			t.Fatalf("available = %v", avail)
		}
		job, err := j.Get(ctx, time.Second)
		thoonktest.Must(t, err)
		if job.ID != hi || string(job.Item) != "high" || job.Cancelled != 0 {
			t.Fatalf("first job %+v", job)
		}
		inflight, _ := j.InFlight(ctx)
		if !slices.Equal(inflight, []string{hi}) {
			t.Fatalf("in flight = %v", inflight)
		}
		thoonktest.Must(t, j.FinishWithResult(ctx, hi, []byte(`{"ok":true}`)))
		if err := j.Finish(ctx, hi); !errors.Is(err, thoonk.ErrNotClaimed) {
			t.Fatalf("finish twice: %v", err)
		}
		// cancel once: runs again with a count; cancel twice: over the limit of 1, stalled
		job, _ = j.Get(ctx, time.Second)
		if job.ID != id1 {
			t.Fatalf("second job %q, want %q", job.ID, id1)
		}
		res, err := j.Cancel(ctx, id1)
		thoonktest.Must(t, err)
		if res.Count != 1 || res.Stalled {
			t.Fatalf("first cancel %+v", res)
		}
		job, _ = j.Get(ctx, time.Second)
		if job.ID != id2 {
			t.Fatalf("third get %q, want %q (cancelled job goes to the back)", job.ID, id2)
		}
		thoonktest.Must(t, j.Finish(ctx, id2))
		job, _ = j.Get(ctx, time.Second)
		if job.ID != id1 || job.Cancelled != 1 {
			t.Fatalf("retried job %+v", job)
		}
		if n, _ := j.Failures(ctx, id1); n != 1 {
			t.Fatalf("failures = %d", n)
		}
		res, err = j.Cancel(ctx, id1)
		thoonktest.Must(t, err)
		if !res.Stalled || res.Count != 2 {
			t.Fatalf("second cancel %+v, want stalled", res)
		}
		stalled, _ := j.StalledIDs(ctx)
		if !slices.Equal(stalled, []string{id1}) {
			t.Fatalf("stalled = %v", stalled)
		}
		st, _ := j.State(ctx, id1)
		if st.State != thoonk.JobStalled {
			t.Fatalf("state = %+v", st)
		}
		if err := j.Retry(ctx, "fixed"); !errors.Is(err, thoonk.ErrNotStalled) {
			t.Fatalf("retry of a finished job: %v", err)
		}
		thoonktest.Must(t, j.Retry(ctx, id1))
		job, _ = j.Get(ctx, time.Second)
		if job.ID != id1 || job.Cancelled != 0 {
			t.Fatalf("job after retry %+v (stall clears the count)", job)
		}
		thoonktest.Must(t, j.Stall(ctx, id1, ""))
		thoonktest.Must(t, j.Retract(ctx, id1))
		if err := j.Retract(ctx, id1); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("retract twice: %v", err)
		}
		for _, key := range []string{"feed.ids:jobs", "feed.claimed:jobs", "feed.published:jobs", "feed.items:jobs", "feed.cancelled:jobs", "feed.stalled:jobs"} {
			if n, _ := b.RDB.Exists(ctx, key).Result(); n != 0 {
				t.Errorf("%s still exists after every job ended", key)
			}
		}
		if n, _ := b.RDB.Get(ctx, "feed.finishes:jobs").Int(); n != 2 {
			t.Fatalf("finishes = %d", n)
		}
		if n, _ := b.RDB.Get(ctx, "feed.publishes:jobs").Int(); n != 3 {
			t.Fatalf("publishes = %d", n)
		}
	})
}

func TestJobStatusRecord(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		j := s.Jobs("jobs")
		id, err := j.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Hour})
		thoonktest.Must(t, err)
		st, _ := j.State(ctx, id)
		if st.State != thoonk.JobQueued {
			t.Fatalf("state %+v", st)
		}
		_, _ = j.Get(ctx, time.Second)
		st, _ = j.State(ctx, id)
		if st.State != thoonk.JobClaimed {
			t.Fatalf("state %+v", st)
		}
		thoonktest.Must(t, j.Finish(ctx, id))
		st, _ = j.State(ctx, id)
		if st.State != thoonk.JobFinished || st.HasResult {
			t.Fatalf("state after finish %+v", st)
		}
		ttl, _ := b.RDB.PTTL(ctx, "feedbridge.job:jobs:"+id).Result()
		if ttl <= 0 || ttl > time.Hour {
			t.Fatalf("record ttl %v", ttl)
		}
		st, _ = j.State(ctx, "never-put")
		if st.State != thoonk.JobUnknown {
			t.Fatalf("state of unknown job %+v", st)
		}
	})
}

func TestDescribe(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "p", thoonk.TypeFeed, map[string]string{"title": "P"})
		b.Create(t, "s", thoonk.TypeSorted, nil)
		b.Create(t, "j", thoonk.TypeJob, nil)
		_, _ = s.Feed("p").Publish(ctx, []byte("x"), "1")
		_, _ = s.Sorted("s").Append(ctx, []byte("x"))
		_, _ = s.Sorted("s").Append(ctx, []byte("y"))
		_, _ = s.Jobs("j").Put(ctx, []byte("x"), thoonk.PutOptions{})
		infos, err := s.Describe(ctx, "p", "missing", "s", "j")
		thoonktest.Must(t, err)
		if len(infos) != 3 {
			t.Fatalf("infos %+v", infos)
		}
		if infos[0].Name != "p" || infos[0].Type != thoonk.TypeFeed || infos[0].Count != 1 || infos[0].Config["title"] != "P" {
			t.Errorf("plain %+v", infos[0])
		}
		if infos[1].Type != thoonk.TypeSorted || infos[1].Count != 2 {
			t.Errorf("sorted %+v", infos[1])
		}
		if infos[2].Type != thoonk.TypeJob || infos[2].Count != 1 {
			t.Errorf("job %+v", infos[2])
		}
	})
}

func TestItemWithMetadata(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "p", thoonk.TypeFeed, nil)
		b.Create(t, "s", thoonk.TypeSorted, nil)
		_, _ = s.Feed("p").Publish(ctx, []byte("old"), "a")
		time.Sleep(2 * time.Millisecond)
		_, _ = s.Feed("p").Publish(ctx, []byte("new"), "b")
		it, err := s.Item(ctx, "p", "a")
		thoonktest.Must(t, err)
		if string(it.Data) != "old" || it.Index != 1 || it.Published.IsZero() {
			t.Fatalf("plain item %+v", it)
		}
		_, _ = s.Sorted("s").Append(ctx, []byte("x"))
		_, _ = s.Sorted("s").Append(ctx, []byte("y"))
		it, err = s.Item(ctx, "s", "2")
		thoonktest.Must(t, err)
		if string(it.Data) != "y" || it.Index != 1 || !it.Published.IsZero() {
			t.Fatalf("sorted item %+v", it)
		}
		if _, err := s.Item(ctx, "p", "zz"); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("missing item: %v", err)
		}
		b.Create(t, "j", thoonk.TypeJob, nil)
		if _, err := s.Item(ctx, "j", "x"); !errors.Is(err, thoonk.ErrWrongType) {
			t.Fatalf("item of a job feed: %v", err)
		}
	})
}

// The result is in the status record as soon as Finish returns, without
// waiting for any listener.
func TestFinishRecordsResult(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		j := s.Jobs("jobs")
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Hour})
		_, _ = j.Get(ctx, time.Second)
		thoonktest.Must(t, j.FinishWithResult(ctx, id, []byte(`{"ok":true}`)))
		st, err := j.State(ctx, id)
		thoonktest.Must(t, err)
		if st.State != thoonk.JobFinished || !st.HasResult || string(st.Result) != `{"ok":true}` {
			t.Fatalf("state %+v", st)
		}
	})
}

func TestFinishAndClaim(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		j := s.Jobs("jobs")
		first, _ := j.Put(ctx, []byte("1"), thoonk.PutOptions{})
		second, _ := j.Put(ctx, []byte("2"), thoonk.PutOptions{})
		job, err := j.Get(ctx, time.Second)
		thoonktest.Must(t, err)
		next, ok, err := j.FinishAndClaim(ctx, job.ID, []byte("r1"))
		thoonktest.Must(t, err)
		if job.ID != first || !ok || next.ID != second || string(next.Item) != "2" {
			t.Fatalf("first %+v, next %+v ok=%v", job, next, ok)
		}
		if inflight, _ := j.InFlight(ctx); !slices.Equal(inflight, []string{second}) {
			t.Fatalf("in flight %v", inflight)
		}
		_, ok, err = j.FinishAndClaim(ctx, next.ID, []byte("r2"))
		if err != nil || ok {
			t.Fatalf("empty queue: ok=%v err=%v", ok, err)
		}
		if n, _ := b.RDB.Get(ctx, "feed.finishes:jobs").Int(); n != 2 {
			t.Fatalf("finishes %d", n)
		}
		if _, _, err := j.FinishAndClaim(ctx, next.ID, nil); !errors.Is(err, thoonk.ErrNotClaimed) {
			t.Fatalf("finishing twice: %v", err)
		}
	})
}

func TestJobFeedEdgeCases(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, map[string]string{thoonk.ConfigJobTimeout: "60000"})
		b.Create(t, "plain", thoonk.TypeFeed, nil)
		j := s.Jobs("jobs")
		// a retracted job did not finish: its status is unknown
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Hour})
		thoonktest.Must(t, j.Retract(ctx, id))
		if st, _ := j.State(ctx, id); st.State != thoonk.JobUnknown {
			t.Fatalf("state after retract %+v", st)
		}
		// job reads on other feed types are typed errors
		for name, err := range map[string]error{
			"available": func() error { _, err := s.Jobs("plain").Available(ctx); return err }(),
			"inflight":  func() error { _, err := s.Jobs("plain").InFlight(ctx); return err }(),
			"item":      func() error { _, err := s.Jobs("plain").Item(ctx, "x"); return err }(),
			"policy":    func() error { _, err := s.Jobs("missing").Policy(ctx); return err }(),
		} {
			if !errors.Is(err, thoonk.ErrWrongType) && !errors.Is(err, thoonk.ErrFeedNotFound) {
				t.Errorf("%s: %v, want a typed error", name, err)
			}
		}
		// a claim time written in seconds by an older Thoonk writer is not
		// taken as long expired
		id, _ = j.Put(ctx, []byte("y"), thoonk.PutOptions{})
		_, _ = j.Get(ctx, time.Second)
		thoonktest.Must(t, b.RDB.ZAdd(ctx, "feed.claimed:jobs", redis.Z{Score: float64(time.Now().Unix()), Member: id}).Err())
		rep, err := j.NewMaintenance().Pass(ctx)
		thoonktest.Must(t, err)
		if rep.Cancelled != 0 {
			t.Fatalf("a fresh claim in seconds was cancelled: %+v", rep)
		}
		// a config change racing a delete does not bring the feed back
		thoonktest.Must(t, s.Delete(ctx, "plain"))
		if err := s.SetConfig(ctx, "plain", map[string]string{"title": "x"}); !errors.Is(err, thoonk.ErrFeedNotFound) {
			t.Fatalf("set config of a deleted feed: %v", err)
		}
		if n, _ := b.RDB.Exists(ctx, "feed.config:plain").Result(); n != 0 {
			t.Fatal("a config hash came back for a deleted feed")
		}
	})
}

// TestDescribeMalformed: a feed whose keys hold other Redis types, whose
// config names no known type, or whose name is invalid is described with
// an error wrapping ErrMalformed, and the feeds around it as usual.
func TestDescribeMalformed(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "a", thoonk.TypeFeed, nil)
		b.Create(t, "z", thoonk.TypeSorted, nil)
		_, _ = s.Feed("a").Publish(ctx, []byte("x"), "1")
		thoonktest.Malform(t, b.RDB, "")
		thoonktest.Must(t, b.RDB.SAdd(ctx, "feeds", "bad\x01name").Err())
		names, err := s.Feeds(ctx)
		thoonktest.Must(t, err)
		infos, err := s.Describe(ctx, names...)
		thoonktest.Must(t, err)
		var good, bad []string
		for _, in := range infos {
			if in.Err != nil {
				if !errors.Is(in.Err, thoonk.ErrMalformed) || !strings.Contains(in.Err.Error(), fmt.Sprintf("%q", in.Name)) {
					t.Errorf("%q: error %v", in.Name, in.Err)
				}
				bad = append(bad, in.Name)
			} else {
				good = append(good, in.Name)
			}
		}
		if !slices.Equal(good, []string{"a", "z"}) || len(bad) != 5 {
			t.Fatalf("good %q, malformed %q", good, bad)
		}
		// by name: the store's reads report the malformed feed, not a Redis error
		for _, f := range []string{"cfg-string", "ids-list", "items-set"} {
			if _, err := s.Page(ctx, f, thoonk.PageRequest{}); !errors.Is(err, thoonk.ErrMalformed) {
				t.Errorf("page of %q: %v", f, err)
			}
		}
		if _, err := s.Page(ctx, "banana", thoonk.PageRequest{}); !errors.Is(err, thoonk.ErrMalformed) {
			t.Errorf("page of banana: %v", err)
		}
		if _, err := s.Item(ctx, "a", "1"); err != nil {
			t.Errorf("a good feed: %v", err)
		}
	})
}
