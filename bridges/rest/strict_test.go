package rest

import (
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// TestStrictRequests: every malformed part of a request is a 400 naming
// it, and creates no job: a query that is not percent-encoded, an unknown
// or repeated parameter, a JSON body that is not UTF-8, a malformed
// If-Match or If-None-Match (never taken as "match anything").
func TestStrictRequests(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:news", thoonk.TypeFeed, nil)
	jobs := e.jobCount()
	for _, tc := range []struct {
		method, path, body, name string
		hdr                      []string
	}{
		{"GET", "/v1/feeds?cursor=%%%", "", "cursor", nil},
		{"GET", "/v1/feeds?limit=2&limit=3", "", "limit", nil},
		{"GET", "/v1/feeds?colour=red", "", "colour", nil},
		{"GET", "/v1/feeds/public:news/items?wait=1;x", "", "wait", nil},
		{"GET", "/v1/feeds/public:news/items?%zz=1", "", "%zz", nil},
		{"GET", "/v1/feeds/public:news/items/1", "", "If-None-Match", []string{"If-None-Match", `"unclosed`}},
		{"GET", "/v1/feeds/public:news/items/1", "", "If-None-Match", []string{"If-None-Match", `abc`}},
		{"POST", "/v1/feeds/public:news/items", "{\"title\":\"caf\xe9\"}", "UTF-8", []string{"Content-Type", "application/json"}},
		{"POST", "/v1/feeds/public:news/items/1/move", "{\"position\":\"\xff\"}", "UTF-8", []string{"Content-Type", "application/json"}},
		{"PUT", "/v1/feeds/public:news/items/1", `{"a":1}`, "If-Match", []string{"If-Match", `"a" "b"`}},
		{"DELETE", "/v1/feeds/public:news/items/1", "", "If-Match", []string{"If-Match", `*, "a"`}},
		{"DELETE", "/v1/feeds/public:news/items/1", "", "If-Match", []string{"If-Match", `W/"a b"`}},
		{"DELETE", "/v1/feeds/public:news/items/1?id=2", "", "id", nil},
	} {
		r := e.call(tc.method, tc.path, tokAdmin, tc.body, tc.hdr...)
		r.wantProblem(t, 400, "bad-request")
		if !strings.Contains(string(r.body), tc.name) {
			t.Errorf("%s %s: the problem does not name %s: %s", tc.method, tc.path, tc.name, r.body)
		}
	}
	if n := e.jobCount(); n != jobs {
		t.Errorf("refused requests created %d jobs", n-jobs)
	}
	// well-formed ones still work
	e.call("GET", "/v1/feeds?limit=2&access_token="+tokReader, "", "").want(t, 200)
	e.call("GET", "/v1/feeds/public:news/items?limit=1", "", "", "If-None-Match", `W/"x", "y"`).want(t, 200)
}
