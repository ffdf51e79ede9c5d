package thoonk

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// When the feed and the job feed live in different Cluster slots, the
// change is made with a marker; a worker that crashed after the change
// and before the finish leaves a job that runs again, finds the marker
// and finishes with the first outcome: one item, one result.
func TestApplyJobAcrossSlotsRunsOnce(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	s, err := NewStore(rdb, StoreOptions{Journal: JournalOptions{MaxEvents: 100, MaxItemBytes: 100}})
	if err != nil {
		t.Fatal(err)
	}
	s.cluster = true // the slot rule of Redis Cluster, on one server
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Create(ctx, "{team}:list", TypeSorted, nil))
	must(s.Create(ctx, "{bridge}.jobs", TypeJob, map[string]string{ConfigJobTimeout: "50", ConfigJobBackoff: "0"}))
	jobs := s.Jobs("{bridge}.jobs")
	id, _ := jobs.Put(ctx, []byte("x"), PutOptions{RecordTTL: time.Minute})
	job, err := jobs.Get(ctx, time.Second)
	must(err)

	// the worker applies the change, then dies before finishing the job
	keys, args, err := s.changeArgs("{team}:list", Change{Verb: ChangePublish, Item: []byte("hello")}, job.ID)
	must(err)
	args = append(args, markerTTL.Milliseconds(), "0", jobs.name, job.ID, "0", NewID())
	first, err := s.run(ctx, scripts.actionApply, keys, args...).Slice()
	must(err)

	// its claim times out; another worker takes the job and runs it again
	time.Sleep(60 * time.Millisecond)
	if rep, err := jobs.NewMaintenance().Pass(ctx); err != nil || rep.Cancelled != 1 {
		t.Fatalf("maintenance %+v %v", rep, err)
	}
	job, err = jobs.Get(ctx, time.Second)
	must(err)
	a, err := s.ApplyJob(ctx, "{team}:list", Change{Verb: ChangePublish, Item: []byte("hello")}, jobs, job.ID, false)
	must(err)
	if !a.Replayed || a.ID != stringOf(first[1]) || a.Code != 201 {
		t.Fatalf("second run %+v, first %v", a, first)
	}
	if ids, _ := s.Sorted("{team}:list").IDs(ctx); !slices.Equal(ids, []string{"1"}) {
		t.Fatalf("items %v: the change was made twice", ids)
	}
	st, _ := jobs.State(ctx, id)
	if st.State != JobFinished || string(st.Result) != string(AppliedResult(a)) {
		t.Fatalf("job %+v", st)
	}
	if n, _ := rdb.Exists(ctx, appliedKey("{team}:list", id)).Result(); n != 0 {
		t.Fatal("the marker outlived its finished job")
	}
	// the slow first worker comes back: its finish is refused, nothing changes
	if _, _, err := jobs.finish(ctx, id, AppliedResult(a), true, false); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("late finish: %v", err)
	}
}
