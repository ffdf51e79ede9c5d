package thoonk_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// A change applied for a job and the job's finish are one step: the job
// is finished with the outcome, the next job is claimed, and a job no
// longer claimed changes nothing.
func TestApplyJobFinishesInTheSameStep(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		thoonktest.Must(t, s.Create(ctx, "list", thoonk.TypeSorted, nil))
		thoonktest.Must(t, s.Create(ctx, "jobs", thoonk.TypeJob, nil))
		jobs := s.Jobs("jobs")
		l := thoonktest.Listen(t, s, thoonk.ListenerOptions{})
		id1, _ := jobs.Put(ctx, []byte("one"), thoonk.PutOptions{RecordTTL: time.Minute})
		id2, _ := jobs.Put(ctx, []byte("two"), thoonk.PutOptions{RecordTTL: time.Minute})
		w := l.Expect("jobs", id1)
		job, err := jobs.Get(ctx, time.Second)
		thoonktest.Must(t, err)
		a, err := s.ApplyJob(ctx, "news", thoonk.Change{Verb: thoonk.ChangePublish, ID: "n1", Item: []byte("hello")}, jobs, job.ID, true)
		thoonktest.Must(t, err)
		if a.Code != 201 || a.ID != "n1" || a.Rev == "" || a.Replayed || !a.HasNext || a.Next.ID != id2 {
			t.Fatalf("applied %+v", a)
		}
		res, err := w.Wait(ctx)
		thoonktest.Must(t, err)
		if string(res) != string(thoonk.AppliedResult(a)) {
			t.Fatalf("result %s, want %s", res, thoonk.AppliedResult(a))
		}
		if st, _ := jobs.State(ctx, id1); st.State != thoonk.JobFinished || string(st.Result) != string(res) {
			t.Fatalf("state %+v", st)
		}
		// the job is no longer claimed (it finished): running it again changes nothing
		_, err = s.ApplyJob(ctx, "news", thoonk.Change{Verb: thoonk.ChangePublish, ID: "n2", Item: []byte("x")}, jobs, id1, false)
		if !errors.Is(err, thoonk.ErrNotClaimed) {
			t.Fatalf("apply for a finished job: %v", err)
		}
		if ids, _ := s.Feed("news").IDs(ctx); !slices.Equal(ids, []string{"n1"}) {
			t.Fatalf("feed %v", ids)
		}
		// a sorted feed's new id comes back; a refused change leaves the job claimed
		a, err = s.ApplyJob(ctx, "list", thoonk.Change{Verb: thoonk.ChangePublish, Item: []byte("x")}, jobs, id2, false)
		thoonktest.Must(t, err)
		if a.Code != 201 || a.ID != "1" {
			t.Fatalf("sorted publish %+v", a)
		}
		id3, _ := jobs.Put(ctx, []byte("three"), thoonk.PutOptions{})
		_, _ = jobs.Get(ctx, time.Second)
		_, err = s.ApplyJob(ctx, "news", thoonk.Change{Verb: thoonk.ChangeRetract, ID: "ghost"}, jobs, id3, false)
		if !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("retract of a missing item: %v", err)
		}
		if st, _ := jobs.State(ctx, id3); st.State != thoonk.JobClaimed {
			t.Fatalf("a refused change finished the job: %+v", st)
		}
	})
}

// An edit based on a revision is made only while the item is still at
// that revision.
func TestApplyChecksTheExpectedRevision(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		a, err := s.ApplyChange(ctx, "news", thoonk.Change{Verb: thoonk.ChangePublish, ID: "x", Item: []byte("v1")})
		thoonktest.Must(t, err)
		v1 := a.Rev
		b2, err := s.ApplyChange(ctx, "news", thoonk.Change{Verb: thoonk.ChangeEdit, ID: "x", Item: []byte("v2"), ExpectRev: v1})
		thoonktest.Must(t, err)
		_, err = s.ApplyChange(ctx, "news", thoonk.Change{Verb: thoonk.ChangeEdit, ID: "x", Item: []byte("v3"), ExpectRev: v1})
		var conflict *thoonk.ConflictError
		if !errors.As(err, &conflict) || conflict.Current != b2.Rev {
			t.Fatalf("stale edit: %v", err)
		}
		if got, _ := s.Feed("news").Get(ctx, "x"); string(got) != "v2" {
			t.Fatalf("item %q after a refused edit", got)
		}
		if _, err := s.ApplyChange(ctx, "news", thoonk.Change{Verb: thoonk.ChangeMove, ID: "x", Position: &thoonk.Position{}}); !errors.Is(err, thoonk.ErrInvalid) {
			t.Fatalf("a move on a plain feed: %v", err)
		}
		// without an id, a plain-feed publish gets a fresh one
		a, err = s.ApplyChange(ctx, "news", thoonk.Change{Verb: thoonk.ChangePublish, Item: []byte("anon")})
		thoonktest.Must(t, err)
		if len(a.ID) != 32 || a.Code != 201 {
			t.Fatalf("anonymous publish %+v", a)
		}
	})
}

// The result a job is finished with reads the same whether the apply
// script or Go renders it.
func TestAppliedResultMatchesTheScript(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	s := b.StoreWith(t, thoonk.StoreOptions{})
	thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
	thoonktest.Must(t, s.Create(ctx, "jobs", thoonk.TypeJob, nil))
	l := thoonktest.Listen(t, s, thoonk.ListenerOptions{})
	jobs := s.Jobs("jobs")
	for _, id := range []string{"plain", `quote"back\slash`, "a/b<c>&d", "tab\tname é 𝄞", "line\u2028sep"} {
		jid, _ := jobs.Put(ctx, []byte("x"), thoonk.PutOptions{})
		w := l.Expect("jobs", jid)
		_, _ = jobs.Get(ctx, time.Second)
		a, err := s.ApplyJob(ctx, "news", thoonk.Change{Verb: thoonk.ChangePublish, ID: id, Item: []byte("x")}, jobs, jid, false)
		if err != nil {
			if errors.Is(err, thoonk.ErrInvalid) {
				continue // ids with controls are refused before Redis
			}
			t.Fatal(err)
		}
		got, err := w.Wait(ctx)
		thoonktest.Must(t, err)
		if want := thoonk.AppliedResult(a); string(got) != string(want) {
			t.Errorf("id %q: script wrote %s, Go renders %s", id, got, want)
		}
	}
}

// A job that fails waits out a growing backoff before it runs again, and
// keeps its failures and last error once stalled.
func TestFailBacksOffThenStalls(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "jobs", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "2",
			thoonk.ConfigJobBackoff: "100", thoonk.ConfigJobBackoffMax: "150"})
		jobs := b.Store.Jobs("jobs")
		id, _ := jobs.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Minute})
		var delays []time.Duration
		for i := range 3 {
			job, err := jobs.Get(ctx, 2*time.Second)
			thoonktest.Must(t, err)
			before := time.Now()
			res, err := jobs.Fail(ctx, job.ID, "redis went away")
			thoonktest.Must(t, err)
			after := time.Now()
			if i == 2 {
				if !res.Stalled {
					t.Fatalf("third failure %+v", res)
				}
				break
			}
			if res.Stalled || res.RetryAt.IsZero() {
				t.Fatalf("failure %d: %+v", i+1, res)
			}
			// the delay the script drew began between before and after
			delays = append(delays, res.RetryAt.Sub(after), res.RetryAt.Sub(before))
		}
		// first delay in [50, 100] ms, second in [75, 150] ms (doubled,
		// capped): each measured range must reach into its bounds
		if delays[1] < 40*time.Millisecond || delays[0] > 110*time.Millisecond ||
			delays[3] < 65*time.Millisecond || delays[2] > 160*time.Millisecond {
			t.Fatalf("retry delays (at least, at most) %v", delays)
		}
		st, err := jobs.State(ctx, id)
		thoonktest.Must(t, err)
		if st.State != thoonk.JobStalled || st.Failures != 3 || st.LastError != "redis went away" {
			t.Fatalf("stalled state %+v", st)
		}
	})
}

// A put repeated with the same id stores one job, also after the job
// finished while its status record is kept, and tells the first put's
// fingerprint.
func TestPutWithTheSameIDStoresOneJob(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		jobs := b.Store.Jobs("jobs")
		opts := thoonk.PutOptions{ID: "k1", RecordTTL: time.Minute, Fingerprint: "f1"}
		_, err := jobs.Put(ctx, []byte("x"), opts)
		thoonktest.Must(t, err)
		var exists *thoonk.ExistsError
		if _, err := jobs.Put(ctx, []byte("x"), opts); !errors.As(err, &exists) || exists.Fingerprint != "f1" {
			t.Fatalf("second put: %v", err)
		}
		job, _ := jobs.Get(ctx, time.Second)
		thoonktest.Must(t, jobs.Finish(ctx, job.ID))
		if _, err := jobs.Put(ctx, []byte("x"), opts); !errors.As(err, &exists) {
			t.Fatalf("put after the job finished: %v", err)
		}
		if n, _ := b.RDB.Get(ctx, "feed.publishes:jobs").Int(); n != 1 {
			t.Fatalf("%d jobs stored", n)
		}
	})
}
