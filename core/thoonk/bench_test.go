package thoonk

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// benchStore starts a redis-server and returns a store on it.
func benchStore(b *testing.B) (*Store, *testenv.Redis) {
	srv := testenv.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
	b.Cleanup(func() { rdb.Close() })
	s, err := NewStore(rdb, StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return s, srv
}

var rpsRE = regexp.MustCompile(`([0-9.]+) requests per second`)

// redisBenchmarkPublish runs redis-benchmark with 32-deep pipelines on the
// very publish script feedbridge runs, and returns its requests/s: the
// limit of one Redis on this machine.
func redisBenchmarkPublish(b *testing.B, s *Store, srv *testenv.Redis, feed string) float64 {
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		b.Skip("redis-benchmark not installed (Debian package redis-tools)")
	}
	ctx := context.Background()
	if err := scripts.publish.Load(ctx, s.rdb).Err(); err != nil {
		b.Fatal(err)
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port), "-n", "400000", "-c", "50",
		"-P", "32", "-r", "100000000", "-q", "EVALSHA", scripts.publish.Hash(), "8"}
	args = append(args, feedKeys(feed).feed()...)
	args = append(args, feed, s.jmax, s.jitem, "id:__rand_int__", string(benchPayload), "")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v: %s", err, out)
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		b.Fatalf("redis-benchmark output: %s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	return rps
}

var benchPayload = []byte(`{"title":"benchmark item","body":"0123456789abcdef0123456789"}`)

// BenchmarkPublishThroughput publishes from many goroutines of one process
// and reports publishes/s next to redis-benchmark -P 32 running the same
// script against the same server in the same run.
func BenchmarkPublishThroughput(b *testing.B) {
	s, srv := benchStore(b)
	ctx := context.Background()
	for _, f := range []string{"bench-limit", "bench-go"} {
		if err := s.Create(ctx, f, TypeFeed, nil); err != nil {
			b.Fatal(err)
		}
	}
	// the limit is measured before and after, to even out machine noise
	before := redisBenchmarkPublish(b, s, srv, "bench-limit")
	f := s.Feed("bench-go")
	const workers = 512
	var n atomic.Int64
	total := int64(max(b.N, 200000))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n.Add(1) <= total {
				if _, err := f.Publish(ctx, benchPayload, ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rate := float64(total) / time.Since(start).Seconds()
	b.StopTimer()
	limit := (before + redisBenchmarkPublish(b, s, srv, "bench-limit")) / 2
	b.ReportMetric(rate, "publishes/s")
	b.ReportMetric(limit, "redis-benchmark-P32/s")
	b.ReportMetric(rate/limit, "ratio")
	b.ReportMetric(0, "ns/op")
}

// publishRate publishes total items to feed from 512 goroutines and
// returns publishes/s.
func publishRate(b *testing.B, s *Store, feed string, total int64) float64 {
	ctx := context.Background()
	f := s.Feed(feed)
	var n atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 512 {
		wg.Go(func() {
			for n.Add(1) <= total {
				if _, err := f.Publish(ctx, benchPayload, ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// BenchmarkPublishJournal publishes with the journal off and on, in turns
// on one redis-server in the same run, and reports both rates and their
// ratio: what journaling every change in the publish script costs.
func BenchmarkPublishJournal(b *testing.B) {
	off, on, _, _ := journalBenchStores(b)
	total := int64(max(b.N, 100000))
	b.ResetTimer()
	var rOff, rOn float64
	for range 2 { // alternate, to even out machine noise
		rOff += publishRate(b, off, "bench-off", total) / 2
		rOn += publishRate(b, on, "bench-on", total) / 2
	}
	b.StopTimer()
	b.ReportMetric(rOff, "off-publishes/s")
	b.ReportMetric(rOn, "on-publishes/s")
	b.ReportMetric(rOn/rOff, "ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkJobCycle runs put + get + finish cycles with 8 workers.
func BenchmarkJobCycle(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	if err := s.Create(ctx, "bench-jobs", TypeJob, nil); err != nil {
		b.Fatal(err)
	}
	j := s.Jobs("bench-jobs")
	total := int64(max(b.N, 100000))
	var put, done atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 { // producers
		wg.Go(func() {
			for put.Add(1) <= total {
				if _, err := j.Put(ctx, benchPayload, PutOptions{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for range 8 { // workers, as the built-in worker runs: finish-and-claim while work is queued
		wg.Go(func() {
			for done.Load() < total {
				job, err := j.Get(ctx, 100*time.Millisecond)
				if err != nil {
					continue
				}
				for more := true; more; {
					job, more, err = j.FinishAndClaim(ctx, job.ID, []byte(`{"ok":true}`))
					if err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "cycles/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPublishAllocs measures one publish's allocations in this process.
func BenchmarkPublishAllocs(b *testing.B) {
	s, _ := benchStore(b)
	ctx := context.Background()
	if err := s.Create(ctx, "bench-allocs", TypeFeed, nil); err != nil {
		b.Fatal(err)
	}
	f := s.Feed("bench-allocs")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := f.Publish(ctx, benchPayload, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverEvent measures parsing one pubsub message and delivering
// it to a subscription's consumer: the listener's per-event cost.
func BenchmarkDeliverEvent(b *testing.B) {
	l := NewListener(&Store{}, ListenerOptions{})
	sub := l.SubscribePattern(MustPattern("team:*"), 0)
	channel := "feed.publish:team:1"
	payload := "item-id\x00" + string(benchPayload)
	b.ReportAllocs()
	for b.Loop() {
		ev, _ := parseMessage(channel, payload)
		ev.Seq = l.seq.Add(1)
		l.dispatch(ev)
		if _, ok := sub.TryNext(); !ok {
			b.Fatal("not delivered")
		}
	}
}
