package atom

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// TestMalformedFeedIsolated: feeds whose keys break the schema are left
// out of the discovery page (which answers 200), answered 500 with a
// problem naming them, and the good feed next to them renders.
func TestMalformedFeedIsolated(t *testing.T) {
	h := newHarness(t, "")
	h.create("good", thoonk.TypeFeed, nil)
	h.publish("good", "1", `{"title":"hello"}`)
	bad := thoonktest.Malform(t, h.rdb, "")

	_, page := h.ok("/atom/")
	if !strings.Contains(string(page), "/atom/good") {
		t.Fatalf("the good feed is not listed:\n%s", page)
	}
	for _, f := range bad {
		if strings.Contains(string(page), "/atom/"+url.PathEscape(f)) {
			t.Errorf("malformed %q listed", f)
		}
		resp, body := h.get("/atom/" + url.PathEscape(f))
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(body), "malformed") {
			t.Errorf("/atom/%s: %s %s", f, resp.Status, body)
		}
	}
	h.ok("/atom/good")
	if st := h.bridge.hub.States()["atom"]; st.State != "up" {
		t.Errorf("adapter state %+v", st)
	}
}

// TestStrictConditions: a malformed If-None-Match, If-Modified-Since or
// query is a 400 naming it, never a 200 or a 304 by accident.
func TestStrictConditions(t *testing.T) {
	h := newHarness(t, "")
	h.create("news", thoonk.TypeFeed, nil)
	h.publish("news", "1", `{"title":"hello"}`)
	for _, tc := range []struct{ path, name, hdr, val string }{
		{"/atom/news", "If-None-Match", "If-None-Match", `"unclosed`},
		{"/atom/news", "If-None-Match", "If-None-Match", `*, "a"`},
		{"/rss/news", "If-Modified-Since", "If-Modified-Since", "yesterday"},
		{"/atom/news?after=%zz", "after", "", ""},
		{"/atom/news?after=x&after=y", "after", "", ""},
		{"/atom/?format=opml&format=html", "format", "", ""},
		{"/atom/?format=%", "format", "", ""},
	} {
		var hdr []string
		if tc.hdr != "" {
			hdr = []string{tc.hdr, tc.val}
		}
		resp, body := h.get(tc.path, hdr...)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), tc.name) {
			t.Errorf("%s %s=%q: %s %s", tc.path, tc.hdr, tc.val, resp.Status, body)
		}
	}
	h.ok("/atom/news", "If-None-Match", `W/"x", "y"`)
}
