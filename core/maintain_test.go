package core_test

import (
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
)

func TestMaintenanceRetriesJobOfDeadWorker(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, s := ctxT(t), b.store
		create(t, b, "jobs", core.TypeJob, map[string]string{core.ConfigJobTimeout: "100", core.ConfigJobRetries: "1"})
		j := s.Jobs("jobs")
		m := j.NewMaintenance()
		id, _ := j.Put(ctx, []byte("x"), core.PutOptions{})

		// a worker claims the job and dies
		_, err := j.Get(ctx, time.Second)
		must(t, err)
		rep, err := m.Pass(ctx)
		must(t, err)
		if rep != (core.MaintenanceReport{}) {
			t.Fatalf("a fresh claim was touched: %+v", rep)
		}
		time.Sleep(150 * time.Millisecond)
		rep, err = m.Pass(ctx)
		must(t, err)
		if rep.Cancelled != 1 {
			t.Fatalf("expired claim: %+v", rep)
		}
		job, err := j.Get(ctx, time.Second)
		must(t, err)
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
		must(t, j.Retry(ctx, id))
		if job, _ := j.Get(ctx, time.Second); job.ID != id {
			t.Fatalf("retry did not bring the job back: %+v", job)
		}
	})
}

func TestMaintenanceRequeuesLostJob(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, s := ctxT(t), b.store
		create(t, b, "jobs", core.TypeJob, nil)
		j := s.Jobs("jobs")
		m := j.NewMaintenance()
		id, _ := j.Put(ctx, []byte("x"), core.PutOptions{})
		// a worker popped the id (BRPOP) and died before claiming it
		must(t, b.rdb.RPop(ctx, "feed.ids:jobs").Err())

		rep, err := m.Pass(ctx)
		must(t, err)
		if rep.Requeued != 0 {
			t.Fatal("requeued on the first sighting: a live worker may be between pop and claim")
		}
		rep, err = m.Pass(ctx)
		must(t, err)
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
	eachBackend(t, func(t *testing.T, b *backend) {
		ctx, s := ctxT(t), b.store
		create(t, b, "jobs", core.TypeJob, map[string]string{core.ConfigJobRetries: "2"})
		j := s.Jobs("jobs")
		id, _ := j.Put(ctx, []byte("x"), core.PutOptions{})
		// thoonk.py's cancel applies no limit: the count just grows
		must(t, b.rdb.HSet(ctx, "feed.cancelled:jobs", id, 3).Err())
		rep, err := j.NewMaintenance().Pass(ctx)
		must(t, err)
		if rep.Stalled != 1 {
			t.Fatalf("report %+v", rep)
		}
		if st, _ := j.State(ctx, id); st.State != core.JobStalled {
			t.Fatalf("state %+v", st)
		}
	})
}
