package atom

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// BenchmarkWebSubFanOut measures the hub on a real redis-server for one
// feed of 20 entries with 1,000 signed subscriptions (each its own
// callback path on one subscriber server on loopback, in the same
// process): per publish, the time until every subscriber received the
// document with the new item (ns/op, "last-ms"), each delivery's time
// from the publish ("p50-ms", "p99-ms"), and deliveries per second.
func BenchmarkWebSubFanOut(b *testing.B) {
	const subscribers = 1000
	h := newHubHarness(b, hubSection())
	h.create("bench", thoonk.TypeFeed, nil)
	item := func(i int, marker string) string {
		return fmt.Sprintf(`{"title":"Entry %d %s","summary":"A short summary of entry %d","content":"Some longer text for entry %d, with <markup> & entities to escape, about three hundred bytes long in all, which is typical of a chat or task feed item rather than a blog post.","categories":["bench","go"],"link":"https://example.org/%d"}`, i, marker, i, i, i)
	}
	for i := range 20 {
		h.publish("bench", fmt.Sprint(i), item(i, ""))
	}

	var mu sync.Mutex
	var marker []byte
	var start time.Time
	var got map[string]bool
	var lat []time.Duration
	done := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodGet { // a denial; nothing else comes as GET here
			return
		}
		w.WriteHeader(http.StatusNoContent)
		mu.Lock()
		defer mu.Unlock()
		if marker == nil || got[r.URL.Path] || !bytes.Contains(body, marker) {
			return
		}
		got[r.URL.Path] = true
		lat = append(lat, time.Since(start))
		if len(got) == subscribers {
			done <- struct{}{}
		}
	}))
	b.Cleanup(srv.Close)

	ctx := context.Background()
	w := h.bridge.ws
	self := h.topic(formatAtom, "bench")
	for i := range subscribers {
		cb := fmt.Sprintf("%s/cb/%d", srv.URL, i)
		sub := &subscription{id: subscriptionID(self, cb), topic: self, self: self, feed: "bench", format: formatAtom,
			callback: cb, secret: "bench-secret", actor: "anonymous", lease: time.Hour, expires: time.Now().Add(time.Hour)}
		if _, _, err := w.store().save(ctx, sub, subscribers); err != nil {
			b.Fatal(err)
		}
	}
	w.addFeed("bench")
	h.barrier()

	var all []time.Duration
	n := 100
	for b.Loop() {
		n++
		mu.Lock()
		marker, got, lat, start = []byte(fmt.Sprintf("mark-%d", n)), map[string]bool{}, lat[:0], time.Now()
		mu.Unlock()
		h.publish("bench", fmt.Sprint(n), item(n, fmt.Sprintf("mark-%d", n)))
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("only %d of %d subscribers got the delivery", len(got), subscribers)
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	}
	slices.Sort(all)
	elapsed := b.Elapsed().Seconds()
	b.ReportMetric(float64(len(all))/elapsed, "deliveries/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)-1]), "last-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
