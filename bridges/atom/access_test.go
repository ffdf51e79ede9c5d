package atom

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// The tokens of the access tests: testACL lets alice read every feed and
// grants bob nothing.
const (
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	tokens     = "tokens:\n  - {name: alice, token: " + aliceToken + "}\n  - {name: bob, token: " + bobToken + "}"
)

// A reader with a token reads the feeds its actor (atom:NAME) may read,
// presenting the token as a bearer token, as the password of HTTP Basic,
// or in the URL; its answers are private. A wrong token is a 401 that
// tells nothing about the feed.
func TestTokenReaders(t *testing.T) {
	h := newHarness(t, tokens)
	h.create("open", thoonk.TypeFeed, nil)
	h.create("secret:x", thoonk.TypeFeed, map[string]string{"title": "Plans"})
	h.publish("open", "1", "public")
	h.publish("secret:x", "1", "private")

	notFound, notFoundBody := h.get("/atom/secret:x")
	if notFound.StatusCode != http.StatusNotFound {
		t.Fatalf("anonymous reader of secret:x: %s", notFound.Status)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("any-user:"+aliceToken))
	for _, how := range []struct {
		name, path string
		header     []string
	}{
		{"bearer", "/atom/secret:x", []string{"Authorization", "Bearer " + aliceToken}},
		{"basic", "/atom/secret:x", []string{"Authorization", basic}},
		{"query", "/atom/secret:x?access_token=" + aliceToken, nil},
	} {
		d, resp := h.atomOf(how.path, how.header...)
		if d.Title != "Plans" || len(d.Entries) != 1 {
			t.Fatalf("%s: alice reads %q with %v", how.name, d.Title, d.ids())
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
			t.Errorf("%s: a token reader's answer has Cache-Control %q: a shared cache may give it to others", how.name, cc)
		}
		if !slices.Contains(resp.Header.Values("Vary"), "Authorization") {
			t.Errorf("%s: Vary %q lacks Authorization", how.name, resp.Header.Values("Vary"))
		}
		if strings.Contains(resp.Header.Get("Link")+d.link("self")+d.link("next"), aliceToken) {
			t.Errorf("%s: the token shows in the document's links", how.name)
		}
	}
	etag := mustHeader(t, h, "/atom/secret:x", "ETag", "Authorization", "Bearer "+aliceToken)
	if r, _ := h.get("/atom/secret:x", "Authorization", "Bearer "+aliceToken, "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("a token reader's If-None-Match: %s", r.Status)
	}

	// bob's token is valid, but the ACL grants atom:bob nothing
	for _, path := range []string{"/atom/secret:x", "/atom/open"} {
		r, body := h.get(path, "Authorization", "Bearer "+bobToken)
		if r.StatusCode != http.StatusNotFound || string(body) != string(notFoundBody) {
			t.Fatalf("bob reads %s: %s %s", path, r.Status, body)
		}
	}

	// a wrong token: the same 401 whether the feed exists, is readable, or not
	var unauthorized []byte
	wrongBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong-token-0123456789"))
	for _, c := range []struct {
		path   string
		header []string
	}{
		{"/atom/secret:x", []string{"Authorization", "Bearer wrong-token-0123456789"}},
		{"/atom/open", []string{"Authorization", wrongBasic}},
		{"/rss/missing", []string{"Authorization", "Bearer wrong-token-0123456789"}},
		{"/json/open?access_token=wrong-token-0123456789", nil},
		{"/atom/", []string{"Authorization", "Digest username=alice"}},
	} {
		r, body := h.get(c.path, c.header...)
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Basic realm="feedbridge"` {
			t.Fatalf("%s with a wrong token: %s, WWW-Authenticate %q", c.path, r.Status, r.Header.Get("WWW-Authenticate"))
		}
		if unauthorized != nil && string(body) != string(unauthorized) {
			t.Fatalf("401 bodies differ, telling feeds apart: %s vs %s", body, unauthorized)
		}
		unauthorized = body
	}

	// The anonymous reader's answers are not private; documents are cached
	// per feed whoever reads them: alice gets the anonymous reader's render.
	h.settle("/atom/open")
	anon, _ := h.ok("/atom/open")
	if cc := anon.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("anonymous Cache-Control %q", cc)
	}
	before := h.commands()
	alice, _ := h.ok("/atom/open", "Authorization", "Bearer "+aliceToken)
	if n := h.commands() - before; n != 1 || alice.Header.Get("ETag") != anon.Header.Get("ETag") { // the INFO that reads the count
		t.Fatalf("alice's read of a cached feed sent %d commands, ETag %s vs %s", n-1, alice.Header.Get("ETag"), anon.Header.Get("ETag"))
	}

	// the discovery page lists what each reader may read
	_, page := h.ok("/atom/")
	_, alicePage := h.ok("/atom/", "Authorization", "Bearer "+aliceToken)
	if strings.Contains(string(page), "Plans") || !strings.Contains(string(alicePage), "Plans") || !strings.Contains(string(alicePage), "/atom/open") {
		t.Fatalf("discovery pages: anonymous\n%s\nalice\n%s", page, alicePage)
	}
}

// mustHeader fetches path (with header pairs) and returns one header.
func mustHeader(t *testing.T, h *harness, path, name string, header ...string) string {
	t.Helper()
	r, _ := h.ok(path, header...)
	return r.Header.Get(name)
}

// Requests that make the adapter render (the cache cannot answer them)
// are limited per client address: beyond the burst, 429 with Retry-After.
// A wrong token counts too (it throttles guessing); a feed the reader may
// not read costs nothing and is not counted; X-Forwarded-For from a client that is not a trusted
// proxy changes nothing.
func TestRendersAreRateLimitedPerClient(t *testing.T) {
	h := newHarness(t, "cache_bytes: 0\nrate_limit: {per_ip: {rate: 0.001, burst: 2}}\n"+tokens)
	h.create("f", thoonk.TypeFeed, nil)
	h.publish("f", "1", "x")
	h.ok("/atom/f")
	h.ok("/rss/f")
	if r, _ := h.get("/atom/secret:x"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("an unreadable feed: %s", r.Status)
	}
	for _, c := range [][]string{
		nil,
		{"X-Forwarded-For", "192.0.2.9"},
		{"Authorization", "Bearer wrong-token-0123456789"},
	} {
		r, body := h.get("/json/f", c...)
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.StatusCode != http.StatusTooManyRequests || err != nil || retry < 1 || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("a render beyond the burst (%v): %s, Retry-After %q: %s", c, r.Status, r.Header.Get("Retry-After"), body)
		}
	}
}

// Cached answers are never limited: a reader polling a cached feed is not
// throttled, only requests that render count. Behind a trusted proxy each
// X-Forwarded-For address has its own budget.
func TestCachedAnswersAreNotLimited(t *testing.T) {
	h := newHarness(t, "rate_limit: {per_ip: {rate: 0.001, burst: 1}}\ntrusted_proxies: [127.0.0.1]")
	ctx := context.Background()
	h.create("f", thoonk.TypeFeed, nil)
	h.publish("f", "1", "x")
	h.eventually("the publish is recorded", func() bool { return h.rdb.HExists(ctx, prefixTimes+"f", "u:1").Val() })
	// the adapter handles events in order, a batch at a time, recording
	// then invalidating: once a later publish is recorded, the cache has
	// seen the publish to f
	h.create("later", thoonk.TypeFeed, nil)
	h.publish("later", "1", "x")
	h.eventually("a later publish is recorded", func() bool { return h.rdb.HExists(ctx, prefixTimes+"later", "u:1").Val() })
	for range 10 { // at most the first renders
		h.ok("/atom/f", "X-Forwarded-For", "192.0.2.1")
	}
	h.ok("/rss/f", "X-Forwarded-For", "192.0.2.2") // renders: the burst of 1
	if r, _ := h.get("/json/f", "X-Forwarded-For", "192.0.2.2"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second render for one client: %s", r.Status)
	}
	h.ok("/rss/f", "X-Forwarded-For", "192.0.2.2") // cached
	h.ok("/atom/f", "X-Forwarded-For", "192.0.2.2")
}

// An item with an empty payload is an entry in every format; in JSON Feed
// it has content_text "" (an item needs content_text or content_html).
func TestEmptyItemInEveryFormat(t *testing.T) {
	h := newHarness(t, "")
	h.create("blank", thoonk.TypeFeed, nil)
	h.publish("blank", "e1", "")
	for _, format := range []string{formatAtom, formatRSS, formatJSON} {
		_, body, f := h.okFeed("/" + format + "/blank")
		if len(f.Items) != 1 || f.Items[0].GUID != "tag:feedbridge.invalid,2025:blank/e1" || f.Items[0].Title != "e1" {
			t.Fatalf("%s: %+v", format, f.Items)
		}
		if format != formatJSON {
			continue
		}
		var jf struct {
			Items []map[string]any `json:"items"`
		}
		if err := json.Unmarshal(body, &jf); err != nil {
			t.Fatal(err)
		}
		if text, ok := jf.Items[0]["content_text"]; !ok || text != "" {
			t.Fatalf("JSON Feed item without content_text or content_html:\n%s", body)
		}
	}
}

func TestConfigTokensAndLimits(t *testing.T) {
	b := newBridge(t, tokens+"\nrate_limit: {per_ip: {rate: 5, burst: 10}, max_clients: 50}\ntrusted_proxies: [10.0.0.0/8]")
	if name, ok := b.tokens.Lookup(aliceToken); !ok || name != "alice" {
		t.Fatalf("alice's token: %q %v", name, ok)
	}
	out, err := yaml.Marshal(b.EffectiveConfig())
	if err != nil || strings.Contains(string(out), aliceToken) || !strings.Contains(string(out), "name: alice") {
		t.Fatalf("the effective config shows a token, or no token names: %v\n%s", err, out)
	}
	_, err = New(mustSection(t, `enabled: true
tokens:
  - {name: "bad name", token: short}
  - {name: anonymous, token: "another-token-0123456789"}
rate_limit: {per_ip: {rate: -1}, max_clients: 0}
trusted_proxies: [proxy.example]`))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"atom.tokens[0].name", "atom:NAME", "atom.tokens[0].token: is 5 characters", "atom.tokens[1].name",
		"atom.rate_limit.per_ip.rate", "atom.rate_limit.max_clients", "atom.trusted_proxies[0]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
