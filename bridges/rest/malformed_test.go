package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// TestMalformedFeedIsolated: feeds whose keys break the schema are left
// out of the listing (which still answers 200), answered with a clear
// problem when named, counted, and never affect the good feed.
func TestMalformedFeedIsolated(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:good", thoonk.TypeFeed, nil)
	if _, err := e.store.Feed("public:good").Publish(context.Background(), []byte(`{"a":1}`), "1"); err != nil {
		t.Fatal(err)
	}
	bad := thoonktest.Malform(t, e.store.Client(), "public:")

	r := e.call("GET", "/v1/feeds", "", "")
	r.want(t, 200)
	var fl FeedList
	_ = json.Unmarshal(r.body, &fl)
	if len(fl.Feeds) != 1 || fl.Feeds[0].Name != "public:good" || fl.Feeds[0].Count != 1 {
		t.Fatalf("listing: %s", r.body)
	}
	for _, f := range bad {
		for _, path := range []string{"", "/items", "/items/1"} {
			r := e.call("GET", "/v1/feeds/"+url.PathEscape(f)+path, "", "")
			r.wantProblem(t, 500, "malformed-feed")
			if !strings.Contains(string(r.body), f) {
				t.Errorf("%s%s: the problem does not name the feed: %s", f, path, r.body)
			}
		}
	}
	e.call("GET", "/v1/feeds/public:good/items/1", "", "").want(t, 200)
	if m := scrape(t, e.hub.Metrics.Handler()); !strings.Contains(m, `feedbridge_feeds_malformed_total{adapter="rest"}`) {
		t.Errorf("no malformed count in the metrics")
	}
	if !slices.Contains([]string{"up"}, string(e.hub.States()["rest"].State)) {
		t.Errorf("adapter state %v", e.hub.States()["rest"])
	}
}

// scrape returns the metrics page.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
