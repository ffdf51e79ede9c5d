package thoonk

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// A worker pops a job id with BRPOP and is slow to claim it: maintenance
// sees the id in no state on two passes and puts it back. The late claim
// must take it out of the available list again (or skip it when another
// worker claimed it meanwhile), so that the job runs once.
func TestLateClaimAfterRequeueRunsOnce(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	s, err := NewStore(rdb, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Create(ctx, "jobs", TypeJob, nil); err != nil {
		t.Fatal(err)
	}
	j := s.Jobs("jobs")
	claimPopped := func(id string) []any {
		vals, _ := s.run(ctx, scripts.jobClaim, j.k.job(j.name, ""), id).Slice()
		return vals
	}
	requeue := func() {
		mt := j.NewMaintenance()
		for range 2 {
			if _, err := mt.Pass(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	// the late claim comes first: the requeued id leaves the list again
	id, _ := j.Put(ctx, []byte("x"), PutOptions{})
	if err := rdb.RPop(ctx, j.k.ids).Err(); err != nil { // the slow worker's BRPOP
		t.Fatal(err)
	}
	requeue()
	if got := claimPopped(id); len(got) != 3 {
		t.Fatalf("late claim: %v", got)
	}
	if _, err := j.Get(ctx, 0); err == nil {
		t.Fatal("a second worker got the job the slow one claimed")
	}
	if err := j.Finish(ctx, id); err != nil {
		t.Fatal(err)
	}

	// another worker claims the requeued id first: the late claim skips it
	id, _ = j.Put(ctx, []byte("y"), PutOptions{})
	_ = rdb.RPop(ctx, j.k.ids).Err()
	requeue()
	job, err := j.Get(ctx, time.Second)
	if err != nil || job.ID != id {
		t.Fatalf("second worker: %+v %v", job, err)
	}
	if got := claimPopped(id); len(got) == 3 {
		t.Fatalf("the slow worker claimed a job already running: %v", got)
	}
}
