package rest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// replayEvents is how many events a resuming client is sent in
// BenchmarkSSEReplay.
const replayEvents = 10000

// BenchmarkSSEReplay measures a resume: the time from the request with a
// Last-Event-ID to the 10,000th missed event read by the client, all of
// them read from the journals (real redis-server, loopback HTTP, the
// adapter in process). One feed: a stream of one feed resuming 10,000
// changes back; ten feeds: a stream of /v1/events?feeds= resuming 1,000
// changes of each of ten feeds, merged in revision order. Each replay is
// checked: the count, the order, and the last id.
func BenchmarkSSEReplay(b *testing.B) {
	for _, feeds := range []int{1, 10} {
		b.Run(fmt.Sprintf("feeds=%d", feeds), func(b *testing.B) {
			e := newEnv(b, baseConfig)
			ctx := context.Background()
			// the writer journals all 10,000 (the env's own store keeps 1,000)
			rdb := redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr, PoolSize: 32})
			b.Cleanup(func() { _ = rdb.Close() })
			w, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 2 * replayEvents, MaxItemBytes: 8192}})
			if err != nil {
				b.Fatal(err)
			}
			names := make([]string, feeds)
			for i := range names {
				names[i] = fmt.Sprintf("public:replay%02d", i)
				e.create(names[i], thoonk.TypeFeed, nil)
			}
			path := "/v1/feeds/" + names[0] + "/events"
			if feeds > 1 {
				path = "/v1/events?feeds=public:replay*"
			}
			// each feed's journal begins before the resume point (a
			// journal begun after a stream of several feeds' point resets
			// it: see TestJournalMultiFeedResumeQuietFeeds in integration)
			publishAll(b, w, names, 1)
			time.Sleep(2 * time.Millisecond)
			// the resume point: the stream's first id
			res, rd := e.stream(path, "")
			from := e.next(rd).ID
			res.Body.Close()
			publishAll(b, w, names, replayEvents/feeds)
			last, err := w.Journal(names[feeds-1]).Last(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				replayOnce(b, e.srv.URL+path, from, feeds, last)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/replay")
			b.ReportMetric(float64(replayEvents*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// publishAll publishes n items to each feed, from 16 goroutines, feed
// after feed in turns so that their revisions interleave.
func publishAll(b *testing.B, s *thoonk.Store, feeds []string, n int) {
	ctx := context.Background()
	item := []byte(`{"title":"a typical task","done":false,"tags":["x","y"],"n":12345}`)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := g; i < n*len(feeds); i += 16 {
				if _, err := s.Feed(feeds[i%len(feeds)]).Publish(ctx, item, ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// replayOnce resumes a stream from id and reads until it has replayEvents
// events; the last one of a stream of one feed must carry the journal's
// last revision.
func replayOnce(b *testing.B, url, id string, feeds int, last string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Last-Event-ID", id)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	rd := resttest.NewReader(res.Body)
	var ev resttest.Event
	for n := 0; n < replayEvents; {
		if ev, err = rd.Next(); err != nil {
			b.Fatalf("after %d events: %v", n, err)
		}
		switch ev.Type {
		case "publish":
			n++
		case "":
		default:
			b.Fatalf("after %d events: %+v", n, ev)
		}
	}
	if feeds == 1 && ev.ID != last {
		b.Fatalf("the 10,000th event has id %s, want the journal's last revision %s", ev.ID, last)
	}
}
