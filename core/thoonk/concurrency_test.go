package thoonk_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// N goroutines publishing, editing and retracting the same feed keep it
// consistent: ids == items, the publish counter counts every publish and
// edit, and max_length is never exceeded.
func TestConcurrentFeedConsistency(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		const maxLen = 20
		b.Create(t, "busy", thoonk.TypeFeed, map[string]string{"max_length": fmt.Sprint(maxLen)})
		f := s.Feed("busy")
		var publishes atomic.Int64
		var over atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for range 300 {
					id := fmt.Sprint(r.IntN(40))
					switch r.IntN(4) {
					case 0:
						if err := f.Retract(ctx, id); err != nil && !errors.Is(err, thoonk.ErrItemNotFound) {
							t.Error(err)
							return
						}
					default:
						if _, err := f.Publish(ctx, []byte("v"+id), id); err != nil {
							t.Error(err)
							return
						}
						publishes.Add(1)
					}
					if n, _ := b.RDB.ZCard(ctx, "feed.ids:busy").Result(); n > maxLen {
						over.Store(n)
					}
				}
			})
		}
		wg.Wait()
		if n := over.Load(); n > 0 {
			t.Fatalf("max_length %d exceeded: %d ids seen", maxLen, n)
		}
		ids, _ := b.RDB.ZRange(ctx, "feed.ids:busy", 0, -1).Result()
		items, _ := b.RDB.HKeys(ctx, "feed.items:busy").Result()
		if len(ids) != len(items) || len(ids) > maxLen {
			t.Fatalf("%d ids, %d items", len(ids), len(items))
		}
		have := map[string]bool{}
		for _, id := range items {
			have[id] = true
		}
		for _, id := range ids {
			if !have[id] {
				t.Fatalf("id %s has no item", id)
			}
		}
		if n, _ := b.RDB.Get(ctx, "feed.publishes:busy").Int64(); n != publishes.Load() {
			t.Fatalf("publishes counter %d, want %d", n, publishes.Load())
		}
	})
}

// N workers on one job feed: every job finished exactly once, none lost,
// and a job runs twice only when it was cancelled.
func TestConcurrentWorkersFinishEachJobOnce(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "work", thoonk.TypeJob, map[string]string{thoonk.ConfigJobRetries: "-1"})
		j := s.Jobs("work")
		const jobs = 600
		var runs sync.Map
		var finished, cancels atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 2))
				for finished.Load() < jobs {
					job, err := j.Get(ctx, 200*time.Millisecond)
					if errors.Is(err, thoonk.ErrTimeout) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := runs.LoadOrStore(job.ID, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					if r.IntN(10) == 0 { // a failing run: the job comes back
						if _, err := j.Cancel(ctx, job.ID); err != nil {
							t.Error(err)
							return
						}
						cancels.Add(1)
						continue
					}
					if err := j.Finish(ctx, job.ID); err != nil {
						t.Error(err)
						return
					}
					finished.Add(1)
				}
			})
		}
		for i := range jobs {
			if _, err := j.Put(ctx, []byte(fmt.Sprint(i)), thoonk.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		if n, _ := b.RDB.Get(ctx, "feed.finishes:work").Int64(); n != jobs {
			t.Fatalf("finishes counter %d, want %d", n, jobs)
		}
		if n, _ := b.RDB.HLen(ctx, "feed.items:work").Result(); n != 0 {
			t.Fatalf("%d jobs left", n)
		}
		count := 0
		runs.Range(func(k, v any) bool {
			count++
			return true
		})
		if count != jobs {
			t.Fatalf("%d distinct jobs ran, want %d", count, jobs)
		}
		// runs beyond the first are exactly the cancels
		var extra int64
		runs.Range(func(k, v any) bool { extra += v.(*atomic.Int64).Load() - 1; return true })
		if extra != cancels.Load() {
			t.Fatalf("%d re-runs for %d cancels: a job ran twice without being cancelled", extra, cancels.Load())
		}
		cancelled, _ := b.RDB.HLen(ctx, "feed.cancelled:work").Result()
		if cancelled != 0 {
			t.Fatalf("cancel counts left behind: %d", cancelled)
		}
	})
}

// Maintenance running all the time (as in several bridge processes) while
// workers take jobs through BRPOP never makes a job run twice.
func TestMaintenanceAlongsideWorkersRunsEachJobOnce(t *testing.T) {
	b := thoonktest.Real(t)
	ctx := thoonktest.Ctx(t)
	b.Create(t, "work", thoonk.TypeJob, nil)
	j := b.Store.Jobs("work")
	const jobs = 300
	stop := make(chan struct{})
	var maint sync.WaitGroup
	for range 2 { // two maintainers, as two processes would run
		maint.Go(func() {
			m := j.NewMaintenance()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := m.Pass(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var runs sync.Map
	var finished atomic.Int64
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for finished.Load() < jobs {
				job, err := j.Get(ctx, 100*time.Millisecond) // mostly the BRPOP path: jobs trickle in
				if errors.Is(err, thoonk.ErrTimeout) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				n, _ := runs.LoadOrStore(job.ID, new(atomic.Int64))
				if n.(*atomic.Int64).Add(1) > 1 {
					t.Errorf("job %s ran twice", job.ID)
				}
				if err := j.Finish(ctx, job.ID); err != nil {
					t.Errorf("finish %s: %v", job.ID, err)
				}
				finished.Add(1)
			}
		})
	}
	for i := range jobs {
		if _, err := j.Put(ctx, []byte(fmt.Sprint(i)), thoonk.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	close(stop)
	maint.Wait()
	if n, _ := b.RDB.Get(ctx, "feed.finishes:work").Int64(); n != jobs {
		t.Fatalf("finishes %d, want %d", n, jobs)
	}
}
