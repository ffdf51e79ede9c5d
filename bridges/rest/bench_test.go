package rest

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// BenchmarkGetItemHandler measures GET /v1/feeds/{feed}/items/{id} in
// process (real redis-server, loopback HTTP, parallel clients), for
// profiling the handler: the end-to-end number against Redis' own HGET is
// integration's BenchmarkRESTGetItem.
func BenchmarkGetItemHandler(b *testing.B) {
	e := newEnv(b, baseConfig)
	e.create("public:bench", thoonk.TypeFeed, nil)
	if _, err := e.store.Feed("public:bench").Publish(context.Background(), []byte(`{"title":"a typical task","done":false,"tags":["x","y"],"n":12345}`), "item-1"); err != nil {
		b.Fatal(err)
	}
	url := e.srv.URL + "/v1/feeds/public:bench/items/item-1"
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
