package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// commandCalls returns the total of INFO commandstats calls.
func commandCalls(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for line := range strings.Lines(info) {
		_, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		total += n
	}
	return total
}

// BenchmarkFleetCommandsPerItem measures the Redis commands (INFO
// commandstats) a bridge fleet spends per published item, with 1 and 3
// processes on one Redis (REST and Atom on, journal on, the publisher's
// own script included): work done once per fleet does not grow with the
// processes. It reports commands/item for each fleet size.
func BenchmarkFleetCommandsPerItem(b *testing.B) {
	const items = 3000
	for _, procs := range []int{1, 3} {
		b.Run(fmt.Sprintf("processes=%d", procs), func(b *testing.B) {
			for range b.N {
				r := testenv.StartRedis(b)
				var bridges []*testenv.Bridge
				for range procs {
					addr := testenv.FreeAddr(b)
					bridges = append(bridges, testenv.StartBridge(b, fmt.Sprintf(`
redis: {url: %s}
http: {listen: %s}
acl: [{actors: ["*"], feeds: ["*"], allow: [read]}]
create_feeds: [{name: news, type: feed}]
`, r.URL, addr), addr))
				}
				rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
				store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 10000, MaxItemBytes: 8192}})
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(2 * time.Second) // leases settled
				ctx := context.Background()
				before := commandCalls(b, rdb)
				start := time.Now()
				for i := range items {
					if _, err := store.Feed("news").Publish(ctx, []byte("item "+strconv.Itoa(i)), ""); err != nil {
						b.Fatal(err)
					}
				}
				time.Sleep(time.Second) // the fleet handles the last events
				took := time.Since(start)
				calls := commandCalls(b, rdb) - before - 1 // INFO itself
				if testing.Verbose() {
					info, _ := rdb.Info(ctx, "commandstats").Result()
					b.Log(info)
				}
				b.ReportMetric(float64(calls)/items, "commands/item")
				b.ReportMetric(took.Seconds(), "s")
				for _, br := range bridges {
					br.Stop()
				}
				_ = rdb.Close()
			}
		})
	}
}
