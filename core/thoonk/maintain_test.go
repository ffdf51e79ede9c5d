package thoonk_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func TestMaintenanceRetriesJobOfDeadWorker(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, map[string]string{thoonk.ConfigJobTimeout: "100", thoonk.ConfigJobRetries: "1",
			thoonk.ConfigJobBackoff: "400"})
		j := s.Jobs("jobs")
		m := j.NewMaintenance()
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{RecordTTL: time.Minute})

		// a worker claims the job and dies
		_, err := j.Get(ctx, time.Second)
		thoonktest.Must(t, err)
		rep, err := m.Pass(ctx)
		thoonktest.Must(t, err)
		if rep != (thoonk.MaintenanceReport{}) {
			t.Fatalf("a fresh claim was touched: %+v", rep)
		}
		time.Sleep(150 * time.Millisecond)
		rep, err = m.Pass(ctx)
		thoonktest.Must(t, err)
		if rep.Cancelled != 1 {
			t.Fatalf("expired claim: %+v", rep)
		}
		// it waits out the retry backoff (200-400 ms) before it runs again
		st, err := j.State(ctx, id)
		thoonktest.Must(t, err)
		if st.State != thoonk.JobQueued || st.RetryAt.IsZero() || st.Failures != 1 || st.LastError == "" {
			t.Fatalf("state while waiting for the retry: %+v", st)
		}
		if job, err := j.Get(ctx, 0); err == nil {
			t.Fatalf("job %s ran again before its backoff", job.ID)
		}
		job, err := j.Get(ctx, 3*time.Second)
		thoonktest.Must(t, err)
		if job.ID != id || job.Cancelled != 1 {
			t.Fatalf("retried job %+v", job)
		}
		// it dies again: over the retry limit of 1, the job is stalled
		time.Sleep(150 * time.Millisecond)
		rep, _ = m.Pass(ctx)
		if rep.Stalled != 1 {
			t.Fatalf("second expiry: %+v", rep)
		}
		if st, _ := j.StalledIDs(ctx); !slices.Equal(st, []string{id}) {
			t.Fatalf("stalled = %v", st)
		}
		// the stalled job keeps its failure count and why it failed
		if st, err := j.State(ctx, id); err != nil || st.State != thoonk.JobStalled || st.Failures != 2 ||
			!strings.Contains(st.LastError, "job timeout") {
			t.Fatalf("stalled state %+v %v", st, err)
		}
		thoonktest.Must(t, j.Retry(ctx, id))
		if job, _ := j.Get(ctx, time.Second); job.ID != id {
			t.Fatalf("retry did not bring the job back: %+v", job)
		}
	})
}

func TestMaintenanceRequeuesLostJob(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, nil)
		j := s.Jobs("jobs")
		m := j.NewMaintenance()
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{})
		// a worker popped the id (BRPOP) and died before claiming it
		thoonktest.Must(t, b.RDB.RPop(ctx, "feed.ids:jobs").Err())

		rep, err := m.Pass(ctx)
		thoonktest.Must(t, err)
		if rep.Requeued != 0 {
			t.Fatal("requeued on the first sighting: a live worker may be between pop and claim")
		}
		rep, err = m.Pass(ctx)
		thoonktest.Must(t, err)
		if rep.Requeued != 1 {
			t.Fatalf("second pass: %+v", rep)
		}
		if job, _ := j.Get(ctx, time.Second); job.ID != id {
			t.Fatalf("lost job not back: %+v", job)
		}
		// a second maintainer (another process) finds nothing to do
		rep, _ = j.NewMaintenance().Pass(ctx)
		rep2, _ := m.Pass(ctx)
		if rep.Requeued+rep2.Requeued != 0 {
			t.Fatal("a claimed job was requeued")
		}
	})
}

func TestMaintenanceStallsJobsCancelledByOtherLibraries(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "jobs", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "2"})
		j := s.Jobs("jobs")
		id, _ := j.Put(ctx, []byte("x"), thoonk.PutOptions{})
		// thoonk.py's cancel applies no limit: the count just grows
		thoonktest.Must(t, b.RDB.HSet(ctx, "feed.cancelled:jobs", id, 3).Err())
		rep, err := j.NewMaintenance().Pass(ctx)
		thoonktest.Must(t, err)
		if rep.Stalled != 1 {
			t.Fatalf("report %+v", rep)
		}
		if st, _ := j.State(ctx, id); st.State != thoonk.JobStalled {
			t.Fatalf("state %+v", st)
		}
	})
}
