package rest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// FuzzPayload: every payload renders as JSON without raw line breaks (one
// SSE data line), and decodes back to the same bytes (JSON payloads to the
// same JSON text, compacted and with <, >, & escaped).
func FuzzPayload(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a": [1, 2]}`, "text", "\xff\x00", "\"str\"", "line\nbreak", "\u2028", " 1 ", "{\"a\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := json.Marshal(ItemJSON{ID: "x", Payload: payloadOf(data)})
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if bytes.ContainsAny(b, "\r\n") {
			t.Fatalf("raw line break in %q", b)
		}
		var back ItemJSON
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("not JSON: %q", b)
		}
		var got []byte
		switch back.Encoding {
		case encJSON:
			var compact, want bytes.Buffer
			if err := json.Compact(&compact, data); err != nil {
				t.Fatalf("json encoding for %q", data)
			}
			json.HTMLEscape(&want, compact.Bytes()) // the same value, safe in HTML
			data, got = want.Bytes(), back.Item
		case encText:
			var s string
			_ = json.Unmarshal(back.Item, &s)
			got = []byte(s)
		case encBase64:
			var s string
			_ = json.Unmarshal(back.Item, &s)
			got, _ = base64.StdEncoding.DecodeString(s)
		default:
			t.Fatalf("encoding %q", back.Encoding)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round trip %q -> %q (%s)", data, got, back.Encoding)
		}
	})
}

// FuzzEventID: a parsed event id prints back to an id that parses the same.
func FuzzEventID(f *testing.F) {
	for _, s := range []string{"abc-1", "-1", "a-", "a-b-1", "a-18446744073709551615", "a-18446744073709551616", "", "a--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parsePosition(s)
		if !ok {
			return
		}
		q, ok := parsePosition(p.String())
		if !ok || q != p {
			t.Fatalf("%q -> %v -> %q -> %v", s, p, p.String(), q)
		}
	})
}

// FuzzPrefer: the wait is within 0 and the cap, whatever the header.
func FuzzPrefer(f *testing.F) {
	for _, s := range []string{"wait=5", "respond-async, wait=100", "WAIT = 3 ; x", `wait="7"`, "wait=-1", "wait=99999999999999999999", ",,;="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if w := preferWait([]string{h}, 30*time.Second); w < 0 || w > 30*time.Second {
			t.Fatalf("%q -> %v", h, w)
		}
	})
}

// FuzzETag: a representation's ETag always matches itself, strongly and
// weakly; nothing matches a missing item; a header either parses strictly
// or is refused, and a refused one never matches anything.
func FuzzETag(f *testing.F) {
	f.Add([]byte("{}"), `"abc", W/"x"`)
	f.Add([]byte("x"), "*")
	f.Add([]byte("x"), `"unclosed`)
	f.Add([]byte("x"), `*, "a"`)
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		etag := etagOf(body)
		self, err := core.ParseETags("If-Match", []string{etag})
		if err != nil || !self.Matches(etag, false) || !self.Matches(etag, true) {
			t.Fatalf("etag %s does not match itself: %v", etag, err)
		}
		weak, _ := core.ParseETags("If-None-Match", []string{"W/" + etag})
		if !weak.Matches(etag, true) || weak.Matches(etag, false) {
			t.Fatalf("W/%s: weak match wrong", etag)
		}
		l, err := core.ParseETags("If-Match", []string{header})
		if err != nil {
			if !errors.Is(err, core.ErrBadHeader) || !strings.Contains(err.Error(), "If-Match") {
				t.Fatalf("%q: %v", header, err)
			}
			return
		}
		if l.Matches("", false) || l.Matches("", true) {
			t.Fatalf("%q matches a missing item", header)
		}
		if with, err := core.ParseETags("If-Match", []string{header, etag}); err == nil && !with.Matches(etag, false) && !l.Any {
			t.Fatalf("%q, %s does not match %s", header, etag, etag)
		}
	})
}

// FuzzFeedPath: every valid feed name and id survives the trip through a
// percent-encoded path as exactly one segment each.
func FuzzFeedPath(f *testing.F) {
	for _, s := range oddNames {
		f.Add(s, "id/1")
	}
	f.Add("a%2Fb", "%")
	f.Add("..", ".")
	e, err := newEngine(nil)
	if err != nil {
		f.Fatal(err)
	}
	var gotFeed, gotID string
	e.GET("/v1/feeds/:feed/items/:id", func(c *gin.Context) { gotFeed, gotID = param(c, "feed"), param(c, "id") })
	mux := http.NewServeMux()
	mux.Handle("/v1/", e)
	f.Fuzz(func(t *testing.T, feed, id string) {
		if thoonk.ValidateFeedName(feed) != nil || thoonk.ValidateID(id) != nil {
			return
		}
		gotFeed, gotID = "", ""
		target := "/v1/feeds/" + pathSegment(feed) + "/items/" + pathSegment(id)
		r := httptest.NewRequest("GET", "http://x"+target, nil)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if gotFeed != feed || gotID != id {
			t.Fatalf("%s: got feed %q id %q (status %d)", target, gotFeed, gotID, w.Code)
		}
	})
}
