package atom

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// BenchmarkFeed measures requests/s for a 20-entry Atom feed on a real
// redis-server, served in process (no client or network cost): a fresh
// render (cache off: one Redis round trip, mapping and encoding), the
// same render the previous release's way (reference_test.go: three
// round trips, items decoded whole, reflective XML), a cached 200, and a
// 304 for a matching If-None-Match.
//
//	go test -run '^$' -bench BenchmarkFeed -benchtime 2s -count 3 ./bridges/atom/
func BenchmarkFeed(b *testing.B) {
	for _, name := range []string{"fresh", "fresh-reference", "cached", "304", "fresh-parallel", "fresh-reference-parallel"} {
		mode, parallel := strings.CutSuffix(name, "-parallel")
		b.Run(name, func(b *testing.B) {
			section := ""
			if mode == "fresh" || mode == "fresh-reference" {
				section = "cache_bytes: 0"
			}
			h := newHarness(b, section)
			h.create("bench", thoonk.TypeFeed, map[string]string{"title": "Benchmark"})
			for i := range 20 {
				h.publish("bench", fmt.Sprint(i), fmt.Sprintf(`{"title":"Entry %d","summary":"A short summary of entry %d",
					"content":"Some longer text for entry %d, with <markup> & entities to escape, about three hundred bytes long in all, which is typical of a chat or task feed item rather than a blog post.","categories":["bench","go"],"link":"https://example.org/%d"}`, i, i, i, i))
			}
			if section == "" {
				h.settle("/atom/bench")
			}
			resp, _ := h.ok("/atom/bench")
			req := httptest.NewRequest(http.MethodGet, "/atom/bench", nil)
			want := http.StatusOK
			if mode == "304" {
				req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
				want = http.StatusNotModified
			}
			ctx := context.Background()
			// one request: its answer, or why it is wrong
			serve := func(req *http.Request) error {
				if mode == "fresh-reference" {
					// the render and its answer; the routing, access check
					// and cache lookup around it are left out, which
					// favours the reference a little
					r, err := h.bridge.referenceRender(ctx, "bench")
					if err != nil {
						return err
					}
					http.ServeContent(httptest.NewRecorder(), req, "", r.modified, bytes.NewReader(r.body))
					return nil
				}
				rec := httptest.NewRecorder()
				h.mux.ServeHTTP(rec, req)
				if rec.Code != want {
					return fmt.Errorf("status %d", rec.Code)
				}
				return nil
			}
			if parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						// a request of its own: the mux writes into one it routes
						if err := serve(req.Clone(ctx)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := serve(req); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
