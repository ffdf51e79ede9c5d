package xmpp

import (
	"context"
	"strconv"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// BenchmarkXMPPResyncCatchUp measures the catch-up after a resync on a
// real redis-server: every node (a plain feed with one subscriber) got one
// item while events were lost; one op reloads the subscriptions, reads
// every node's journal from its cursor and queues its notification. It reports the
// time per node.
func BenchmarkXMPPResyncCatchUp(b *testing.B) {
	for _, nodes := range []int{100, 1000, 5000} {
		b.Run(strconv.Itoa(nodes)+"-nodes", func(b *testing.B) {
			hub := hubOn(b, testenv.StartRedis(b).Addr)
			s := newService(testConfig("pubsub.test", "127.0.0.1:1"), hub, newConns())
			ctx := context.Background()
			feed := func(i int) string { return "f" + strconv.Itoa(i) }
			publishAll := func() {
				for i := range nodes {
					if _, err := hub.Store.Feed(feed(i)).Publish(ctx, []byte(`{}`), ""); err != nil {
						b.Fatal(err)
					}
				}
			}
			for i := range nodes {
				must(b, hub.Store.Create(ctx, feed(i), thoonk.TypeFeed, nil))
				follow(b, s, feed(i), "x@test")
			}
			resync := thoonk.Event{Type: thoonk.EventResync, Reason: thoonk.ResyncConnected}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				publishAll()
				b.StartTimer()
				s.onEvent(ctx, resync)
				b.StopTimer()
				if got := len(drain(b, s.notify)); got != nodes {
					b.Fatalf("%d notifications, want %d", got, nodes)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*nodes), "µs/node")
			b.ReportMetric(0, "ns/op")
		})
	}
}
