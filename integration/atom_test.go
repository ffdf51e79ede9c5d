package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"

	"github.com/feedbridge/feedbridge/bridges/atom/atomtest"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// atomBridgeConfig is a bridge with only the Atom adapter, reachable at
// addr and announcing the public URL https://feeds.example.org/base.
func atomBridgeConfig(redisURL, addr string) string {
	return fmt.Sprintf(`redis:
  url: %s
http:
  listen: %s
  public_url: https://feeds.example.org/base
acl:
  - actors: ["*:anonymous"]
    feeds: ["team:*", "board"]
    allow: [read]
  - actors: ["atom:reader"]
    feeds: ["*"]
    allow: [read]
rest:
  enabled: false
atom:
  enabled: true
  tag_authority: example.org,2025
  tombstone_ttl: 1h
  tokens:
    - {name: reader, token: %s}
`, redisURL, addr, atomReaderToken)
}

// atomReaderToken is the token of the reader atom:reader, who may read
// every feed; the anonymous reader reads team:* and board.
const atomReaderToken = "integration-reader-token-0123456789"

// atomFetch fetches a document from a bridge, with optional header pairs.
// A feed document is checked the way outside readers see it (gofeed, and
// jing against RFC 4287's schema for Atom) and returned parsed.
func atomFetch(t *testing.T, addr, path string, header ...string) (*http.Response, []byte, *gofeed.Feed) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body, atomtest.Check(t, resp, body)
}

// atomGet is atomFetch without the parsed feed.
func atomGet(t *testing.T, addr, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	resp, body, _ := atomFetch(t, addr, path, header...)
	return resp, body
}

// atomFeed fetches a feed document (atom, rss or json), checked as
// atomFetch does, and returns it with its ETag.
func atomFeed(t *testing.T, addr, format, feed string) (*gofeed.Feed, string) {
	t.Helper()
	resp, body, f := atomFetch(t, addr, "/"+format+"/"+url.PathEscape(feed))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s of %q: %s\n%s", format, feed, resp.Status, body)
	}
	return f, resp.Header.Get("ETag")
}

// waitFor polls cond until it holds, failing after 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func guids(f *gofeed.Feed) []string {
	var ids []string
	for _, it := range f.Items {
		ids = append(ids, it.GUID)
	}
	return ids
}

func TestAtomEndToEnd(t *testing.T) {
	rs := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	b := testenv.StartBridge(t, atomBridgeConfig(rs.URL, addr), addr)
	store := storeFor(t, rs.URL)
	ctx := context.Background()
	const feed = "team:1/tasks ü"
	esc := url.PathEscape(feed)
	if err := store.Create(ctx, feed, thoonk.TypeFeed, map[string]string{"title": "Tasks"}); err != nil {
		t.Fatal(err)
	}
	f := store.Feed(feed)
	if _, err := f.Publish(ctx, []byte(`{"title":"Buy milk","content":"2 litres","categories":["home"]}`), "milk"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // a later publish time, so "call" is the newest
	if _, err := f.Publish(ctx, []byte("Call <Bob>\nabout the ]]> bug"), "call"); err != nil {
		t.Fatal(err)
	}

	doc, etag1 := atomFeed(t, addr, "atom", feed)
	want := []string{"tag:example.org,2025:" + esc + "/call", "tag:example.org,2025:" + esc + "/milk"}
	if doc.Title != "Tasks" || !slices.Equal(guids(doc), want) || doc.Items[0].Title != "Call <Bob>" ||
		doc.Items[1].Title != "Buy milk" || !slices.Equal(doc.Items[1].Categories, []string{"home"}) {
		t.Fatalf("Atom feed: %q %v %+v", doc.Title, guids(doc), doc.Items)
	}
	if !slices.Contains(doc.Links, "https://feeds.example.org/base/atom/"+esc) {
		t.Fatalf("no self link behind the public URL: %v", doc.Links)
	}
	for _, format := range []string{"rss", "json"} {
		other, _ := atomFeed(t, addr, format, feed)
		if !slices.Equal(guids(other), want) || other.Items[0].Title != "Call <Bob>" {
			t.Fatalf("%s holds other entries: %v", format, guids(other))
		}
	}

	// An edit changes the documents and the ETag; the old ETag no longer matches.
	time.Sleep(2 * time.Millisecond) // a later millisecond for the edit
	if err := f.Edit(ctx, "milk", []byte(`{"title":"Buy oat milk","content":"2 litres"}`)); err != nil {
		t.Fatal(err)
	}
	var etag2 string
	waitFor(t, "the edit shows in Atom", func() bool {
		doc, etag2 = atomFeed(t, addr, "atom", feed)
		return doc.Items[0].Title == "Buy oat milk"
	})
	if etag2 == etag1 || !slices.Equal(guids(doc), []string{want[1], want[0]}) {
		t.Fatalf("after the edit: ETag %s→%s, ids %v", etag1, etag2, guids(doc))
	}
	if r, _ := atomGet(t, addr, "/atom/"+esc, "If-None-Match", etag1); r.StatusCode != http.StatusOK {
		t.Fatalf("stale ETag: %s", r.Status)
	}
	// (the document may change once more after etag2: a render that ran
	// before the adapter recorded the edit's time shows the old updated time)
	waitFor(t, "the current ETag gives 304", func() bool {
		_, current := atomFeed(t, addr, "atom", feed)
		r, _ := atomGet(t, addr, "/atom/"+esc, "If-None-Match", current)
		return r.StatusCode == http.StatusNotModified
	})
	for _, format := range []string{"rss", "json"} {
		waitFor(t, "the edit shows in "+format, func() bool {
			other, _ := atomFeed(t, addr, format, feed)
			return other.Items[0].Title == "Buy oat milk"
		})
	}

	// A retraction becomes a tombstone in Atom and leaves the other formats.
	if err := f.Retract(ctx, "call"); err != nil {
		t.Fatal(err)
	}
	tombstone := `<deleted-entry xmlns="http://purl.org/atompub/tombstones/1.0" ref="` + want[0] + `"`
	var d *gofeed.Feed
	waitFor(t, "the tombstone shows", func() bool {
		var atomBody []byte
		_, atomBody, d = atomFetch(t, addr, "/atom/"+esc)
		return strings.Contains(string(atomBody), tombstone)
	})
	if !slices.Equal(guids(d), want[1:]) {
		t.Fatalf("entries after the retraction: %v", guids(d))
	}
	for _, format := range []string{"rss", "json"} {
		waitFor(t, "the retraction shows in "+format, func() bool {
			other, _ := atomFeed(t, addr, format, feed)
			return slices.Equal(guids(other), want[1:])
		})
	}

	// A second bridge process on the same Redis, and a restart, agree on
	// every byte: times and tombstones live in Redis.
	addr2 := testenv.FreeAddr(t)
	testenv.StartBridge(t, atomBridgeConfig(rs.URL, addr2), addr2)
	_, settled := atomFeed(t, addr, "atom", feed)
	if _, other := atomFeed(t, addr2, "atom", feed); other != settled {
		t.Fatalf("two bridges serve different documents: ETag %s vs %s", settled, other)
	}
	b.Restart()
	if _, again := atomFeed(t, addr, "atom", feed); again != settled {
		t.Fatalf("the document changed across a restart: ETag %s vs %s", settled, again)
	}
	if _, page := atomGet(t, addr, "/atom/"); !strings.Contains(string(page), `href="https://feeds.example.org/base/atom/`+esc+`"`) {
		t.Fatalf("discovery page lacks the feed:\n%s", page)
	}
}

// TestAtomTokenReader: a feed the anonymous reader may not read is a 404
// to it, and served to a reader whose token (here the HTTP Basic password
// feed readers send) proves an actor the ACL lets read it; a wrong token
// is a 401.
func TestAtomTokenReader(t *testing.T) {
	rs := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	testenv.StartBridge(t, atomBridgeConfig(rs.URL, addr), addr)
	store := storeFor(t, rs.URL)
	ctx := context.Background()
	if err := store.Create(ctx, "private:plans", thoonk.TypeFeed, map[string]string{"title": "Plans"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Feed("private:plans").Publish(ctx, []byte("the plan"), "p1"); err != nil {
		t.Fatal(err)
	}
	if r, _ := atomGet(t, addr, "/atom/private:plans"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("the anonymous reader: %s", r.Status)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("me:"+atomReaderToken))
	r, body, f := atomFetch(t, addr, "/atom/private:plans", "Authorization", basic)
	if r.StatusCode != http.StatusOK || f == nil || f.Title != "Plans" || !slices.Equal(guids(f), []string{"tag:example.org,2025:private:plans/p1"}) {
		t.Fatalf("the token reader: %s\n%s", r.Status, body)
	}
	if !strings.Contains(r.Header.Get("Cache-Control"), "private") {
		t.Fatalf("a token reader's answer: Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	r, _ = atomGet(t, addr, "/atom/private:plans?access_token=not-the-token-0123456789")
	if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Basic realm="feedbridge"` {
		t.Fatalf("a wrong token: %s %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
}

func TestAtomSortedFeedOrderAndTimes(t *testing.T) {
	rs := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	testenv.StartBridge(t, atomBridgeConfig(rs.URL, addr), addr)
	store := storeFor(t, rs.URL)
	ctx := context.Background()
	if err := store.Create(ctx, "board", thoonk.TypeSorted, nil); err != nil {
		t.Fatal(err)
	}
	s := store.Sorted("board")
	var ids []string
	for _, item := range []string{"first", "second", "third"} {
		id, err := s.Append(ctx, []byte(item))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	titles := func(f *gofeed.Feed) string {
		var out []string
		for _, it := range f.Items {
			out = append(out, it.Title)
		}
		return strings.Join(out, ",")
	}
	waitFor(t, "position order", func() bool {
		f, _ := atomFeed(t, addr, "atom", "board")
		return titles(f) == "first,second,third"
	})
	before, _ := atomFeed(t, addr, "atom", "board")
	time.Sleep(2 * time.Millisecond) // a later millisecond for the move
	if err := s.Move(ctx, ids[2], thoonk.Position{Kind: thoonk.PosBegin}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the move shows with a later updated time", func() bool {
		f, _ := atomFeed(t, addr, "atom", "board")
		return titles(f) == "third,first,second" && f.Items[0].UpdatedParsed.After(*before.Items[2].UpdatedParsed)
	})
}
