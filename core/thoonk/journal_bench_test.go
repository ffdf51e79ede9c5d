package thoonk

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/integration/testenv"
)

// journalBenchStores starts a redis-server and returns two stores on it,
// journaling off and on (10,000 events), with the feeds bench-off and
// bench-on, and the journaling store's client.
func journalBenchStores(b *testing.B) (off, on *Store, srv *testenv.Redis, rdb *redis.Client) {
	off, srv = benchStore(b)
	rdb = redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
	b.Cleanup(func() { rdb.Close() })
	on, err := NewStore(rdb, StoreOptions{Journal: JournalOptions{MaxEvents: 10000, MaxItemBytes: 8192}})
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"bench-off", "bench-on"} {
		if err := off.Create(context.Background(), f, TypeFeed, nil); err != nil {
			b.Fatal(err)
		}
	}
	return off, on, srv, rdb
}

var usecRE = regexp.MustCompile(`cmdstat_evalsha:calls=\d+,usec=\d+,usec_per_call=([0-9.]+)`)

// BenchmarkPublishJournalLimit runs the publish script itself with
// redis-benchmark (-P 32, 50 clients), journal off and on in turns, on
// one redis-server in the same run, and reports both rates and their
// ratio, and Redis' CPU time per publish script call from INFO
// commandstats: what journaling costs Redis, without any client in the
// way (BenchmarkPublishJournal measures the same through the Go client).
func BenchmarkPublishJournalLimit(b *testing.B) {
	off, on, srv, rdb := journalBenchStores(b)
	ctx := context.Background()
	// run returns publishes/s and Redis' own CPU time per publish script
	// call (INFO commandstats: steadier than rates on a shared machine)
	run := func(s *Store, feed string) (rate, usec float64) {
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		rate = redisBenchmarkPublish(b, s, srv, feed)
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		m := usecRE.FindStringSubmatch(info)
		if m == nil {
			b.Fatalf("no evalsha in INFO commandstats:\n%s", info)
		}
		usec, _ = strconv.ParseFloat(m[1], 64)
		return rate, usec
	}
	b.ResetTimer()
	var rOff, rOn, uOff, uOn float64
	for range 2 { // alternate, to even out machine noise
		r, u := run(off, "bench-off")
		rOff, uOff = rOff+r/2, uOff+u/2
		r, u = run(on, "bench-on")
		rOn, uOn = rOn+r/2, uOn+u/2
	}
	b.StopTimer()
	if n, _ := rdb.XLen(ctx, "feedbridge.journal:bench-on").Result(); n < 10000 {
		b.Fatalf("the journal holds %d entries: it was not written", n)
	}
	b.ReportMetric(rOff, "off-publishes/s")
	b.ReportMetric(rOn, "on-publishes/s")
	b.ReportMetric(rOn/rOff, "ratio")
	b.ReportMetric(uOff, "off-µs/call")
	b.ReportMetric(uOn, "on-µs/call")
	b.ReportMetric(0, "ns/op")
}
