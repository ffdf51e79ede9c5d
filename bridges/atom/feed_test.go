package atom

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// atomDoc is what the tests read back from an Atom document with
// encoding/xml, exactly as written.
type atomDoc struct {
	ID      string `xml:"id"`
	Title   string `xml:"title"`
	Updated string `xml:"updated"`
	Links   []struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	} `xml:"link"`
	Deleted []struct {
		Ref  string `xml:"ref,attr"`
		When string `xml:"when,attr"`
	} `xml:"http://purl.org/atompub/tombstones/1.0 deleted-entry"`
	Entries []struct {
		ID        string `xml:"id"`
		Title     string `xml:"title"`
		Updated   string `xml:"updated"`
		Published string `xml:"published"`
		Content   struct {
			Type string `xml:"type,attr"`
			Body string `xml:",chardata"`
		} `xml:"content"`
		Categories []struct {
			Term string `xml:"term,attr"`
		} `xml:"category"`
	} `xml:"entry"`
}

func (d *atomDoc) link(rel string) string {
	for _, l := range d.Links {
		if l.Rel == rel {
			return l.Href
		}
	}
	return ""
}

func (d *atomDoc) ids() []string {
	var ids []string
	for _, e := range d.Entries {
		ids = append(ids, e.ID)
	}
	return ids
}

// atomOf fetches an Atom document (checked with jing and gofeed by the
// harness) and decodes it; gofeed, an independent reader, must read the
// same entries, by id and in order.
func (h *harness) atomOf(path string, header ...string) (*atomDoc, *http.Response) {
	h.t.Helper()
	resp, body, f := h.okFeed(path, header...)
	if ct := resp.Header.Get("Content-Type"); ct != "application/atom+xml; charset=utf-8" {
		h.t.Fatalf("Content-Type %q", ct)
	}
	var d atomDoc
	if err := xml.Unmarshal(body, &d); err != nil {
		h.t.Fatal(err)
	}
	var read []string
	for _, it := range f.Items {
		read = append(read, it.GUID)
	}
	if !slices.Equal(read, d.ids()) {
		h.t.Fatalf("gofeed reads the entries %q, the document holds %q", read, d.ids())
	}
	return &d, resp
}

// settle waits until the events before now are handled: path is then
// served from the cache, without a command to Redis.
func (h *harness) settle(path string) {
	h.t.Helper()
	h.eventually("the events are handled and "+path+" is cached", func() bool {
		n := h.commands()
		h.ok(path)
		return h.commands()-n == 1 // the INFO that reads the count
	})
}

// local turns an absolute link of the test server into a path.
func local(t testing.TB, link string) string {
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

const everyField = `tag_authority: example.org,2025
author: {name: Desk, email: desk@example.org}
entry_url: "https://app.example.org/{feed}/items/{id}"
alternate_url: "https://app.example.org/{feed}"
mappings:
  - feeds: ["news:*"]
    title: headline
    summary: teaser
    content: body
    content_type: html
    author: by
    link: url
    updated: edited
    published: posted
    categories: tags`

func TestEveryFieldInEveryFormat(t *testing.T) {
	h := newHarness(t, everyField)
	feed := "news:eu/fr ü"
	esc := url.PathEscape(feed)
	h.create(feed, thoonk.TypeFeed, map[string]string{"title": "EU <news>", "description": "From Brussels"})
	h.publish(feed, "a/1", `{"headline":"Vote today","teaser":"Polls open","body":"<p>Doors at <b>8</b></p>",
		"by":{"name":"Ann","email":"ann@example.org"},"url":"https://example.org/vote","edited":"2025-05-06T07:08:09Z",
		"posted":"2025-05-01T00:00:00Z","tags":["politics","eu"]}`)
	time.Sleep(2 * time.Millisecond) // a later publish time, so "b 2" is the newest
	h.publish(feed, "b 2", `{"headline":"No link","body":"<i>x</i>","url":"javascript:alert(1)"}`)

	d, _ := h.atomOf("/atom/" + esc)
	if d.ID != "tag:example.org,2025:"+esc || d.Title != "EU <news>" {
		t.Fatalf("feed id %q title %q", d.ID, d.Title)
	}
	if self := d.link("self"); self != h.bridge.hub.PublicURL+"/atom/"+esc {
		t.Fatalf("self link %q", self)
	}
	if alt := d.link("alternate"); alt != "https://app.example.org/"+esc {
		t.Fatalf("alternate link %q", alt)
	}
	if len(d.Entries) != 2 {
		t.Fatalf("%d entries", len(d.Entries))
	}
	e := d.Entries[1] // published first, so shown last
	if e.ID != "tag:example.org,2025:"+esc+"/a%2F1" || e.Title != "Vote today" || e.Content.Type != "html" ||
		e.Content.Body != "<p>Doors at <b>8</b></p>" || e.Updated != "2025-05-06T07:08:09.000Z" ||
		e.Published != "2025-05-01T00:00:00.000Z" || len(e.Categories) != 2 || e.Categories[0].Term != "politics" {
		t.Fatalf("first item's entry: %+v", e)
	}

	// The same entries, read by gofeed from each format.
	var parsed []*gofeed.Feed
	for _, format := range []string{formatAtom, formatRSS, formatJSON} {
		resp, _, f := h.okFeed("/" + format + "/" + esc)
		if resp.Header.Get("Content-Type") != mediaTypes[format] {
			t.Fatalf("%s: Content-Type %q", format, resp.Header.Get("Content-Type"))
		}
		parsed = append(parsed, f)
	}
	for i, f := range parsed {
		if f.Title != "EU <news>" || len(f.Items) != 2 {
			t.Fatalf("format %d: title %q, %d items", i, f.Title, len(f.Items))
		}
		it := f.Items[1]
		if it.GUID != e.ID || it.Title != "Vote today" || it.Link != "https://example.org/vote" ||
			!slices.Equal(it.Categories, []string{"politics", "eu"}) || it.Authors[0].Name != "Ann" ||
			it.PublishedParsed == nil || !it.PublishedParsed.Equal(time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("format %d: item %+v", i, it)
		}
		if f.Items[0].Link != "https://app.example.org/"+esc+"/items/b%202" {
			t.Fatalf("format %d: a javascript: link was not replaced by entry_url: %q", i, f.Items[0].Link)
		}
	}
	if parsed[0].Items[1].Description != "Polls open" || parsed[2].Items[1].Content != "<p>Doors at <b>8</b></p>" {
		t.Fatalf("summary %q / JSON content %q", parsed[0].Items[1].Description, parsed[2].Items[1].Content)
	}
}

func TestHostileContentIsEscaped(t *testing.T) {
	h := newHarness(t, "")
	h.create("evil", thoonk.TypeFeed, map[string]string{"title": "</title><script>alert(1)</script>\x07"})
	payloads := []string{
		"<script>alert(1)</script>",
		"]]><injected/>",
		"</content></entry><entry><id>forged</id><title>x</title></entry>",
		"ctl\x00\x01\x08\x0b\x0c\x1f\x7f end",
		"bad utf-8 \xff\xfe\xc3 end",
		"&amp; &lt; &#0; \uFFFE",
		`{"title":"<b>json</b>","content":"]]>\u0000<x>"}`,
	}
	for i, p := range payloads {
		h.publish("evil", fmt.Sprint("id", i), p)
		time.Sleep(2 * time.Millisecond) // distinct publish times keep the order
	}
	d, _ := h.atomOf("/atom/evil")
	if len(d.Entries) != len(payloads) {
		t.Fatalf("%d entries for %d items", len(d.Entries), len(payloads))
	}
	m := h.bridge.cfg.mappingFor("evil")
	for i, e := range d.Entries {
		want := m.apply([]byte(payloads[len(payloads)-1-i]), h.bridge.cfg.MaxEntryBytes)
		if e.Content.Body != want.content || e.Title != want.title || e.Content.Type != "text" {
			t.Errorf("entry %d reads back as %q / %q, want %q / %q", i, e.Title, e.Content.Body, want.title, want.content)
		}
		if strings.Contains(e.ID, "forged") {
			t.Errorf("an item forged an entry")
		}
	}
	if d.Title != "</title><script>alert(1)</script>" {
		t.Errorf("feed title %q", d.Title)
	}
	for _, format := range []string{formatRSS, formatJSON} {
		_, body, f := h.okFeed("/" + format + "/evil")
		if len(f.Items) != len(payloads) {
			t.Fatalf("%s: %d items", format, len(f.Items))
		}
		if format == formatRSS && strings.Contains(string(body), "<script>") {
			t.Fatalf("RSS holds live markup:\n%s", body)
		}
	}
}

func TestIDsStableAcrossRendersAndEdits(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	h.create("plain", thoonk.TypeFeed, nil)
	h.publish("plain", "x", "first version")
	h.settle("/atom/plain") // the publish's time is recorded
	d1, r1 := h.atomOf("/atom/plain")
	d2, r2 := h.atomOf("/atom/plain")
	if d1.Entries[0].ID != d2.Entries[0].ID || r1.Header.Get("ETag") != r2.Header.Get("ETag") {
		t.Fatal("two renders of an unchanged feed differ")
	}
	time.Sleep(2 * time.Millisecond) // the next edit must get a later millisecond
	h.publish("plain", "x", "second version")
	var d3 *atomDoc
	h.eventually("the edit shows", func() bool {
		d3, _ = h.atomOf("/atom/plain")
		return d3.Entries[0].Content.Body == "second version"
	})
	h.settle("/atom/plain") // and the edit's
	d3, _ = h.atomOf("/atom/plain")
	e1, e3 := d1.Entries[0], d3.Entries[0]
	if e3.ID != e1.ID || e3.Published != e1.Published || e3.Updated <= e1.Updated {
		t.Fatalf("after an edit: id %q→%q published %q→%q updated %q→%q", e1.ID, e3.ID, e1.Published, e3.Published, e1.Updated, e3.Updated)
	}

	// Sorted feeds keep no times: the bridge's own record of edits and moves shows.
	h.create("list", thoonk.TypeSorted, nil)
	sf := h.store.Sorted("list")
	first, err := sf.Append(ctx, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.Append(ctx, []byte("two")); err != nil {
		t.Fatal(err)
	}
	h.settle("/atom/list")
	s1, _ := h.atomOf("/atom/list")
	if s1.Entries[0].Content.Body != "one" {
		t.Fatalf("sorted feed not in position order: %+v", s1.ids())
	}
	time.Sleep(2 * time.Millisecond)
	if err := sf.Edit(ctx, first, []byte("one, edited")); err != nil {
		t.Fatal(err)
	}
	var s2 *atomDoc
	h.eventually("the edit shows", func() bool {
		s2, _ = h.atomOf("/atom/list")
		return s2.Entries[0].Content.Body == "one, edited" && s2.Entries[0].Updated > s1.Entries[0].Updated
	})
	if s2.Entries[0].ID != s1.Entries[0].ID || s2.Entries[1].Updated != s1.Entries[1].Updated {
		t.Fatalf("edit changed the id or another entry's time: %+v → %+v", s1.Entries, s2.Entries)
	}
	time.Sleep(2 * time.Millisecond)
	if err := sf.Move(ctx, first, thoonk.Position{Kind: thoonk.PosEnd}); err != nil {
		t.Fatal(err)
	}
	h.eventually("the move shows", func() bool {
		s3, _ := h.atomOf("/atom/list")
		return s3.Entries[1].ID == s1.Entries[0].ID && s3.Entries[1].Updated > s2.Entries[0].Updated
	})
}

func TestConditionalGET(t *testing.T) {
	h := newHarness(t, "")
	h.create("cond", thoonk.TypeFeed, nil)
	h.publish("cond", "1", "hello")
	h.settle("/atom/cond")
	resp, _ := h.ok("/atom/cond")
	etag, modified := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || modified == "" {
		t.Fatalf("ETag %q Last-Modified %q", etag, modified)
	}
	before := h.commands()
	for range 20 {
		if r, body := h.get("/atom/cond", "If-None-Match", etag); r.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("If-None-Match: %s %q", r.Status, body)
		}
		if r, _ := h.get("/atom/cond", "If-Modified-Since", modified); r.StatusCode != http.StatusNotModified {
			t.Fatalf("If-Modified-Since: %s", r.Status)
		}
		if r, _ := h.ok("/atom/cond"); r.Header.Get("ETag") != etag {
			t.Fatal("ETag changed without a change")
		}
	}
	if n := h.commands() - before; n > 1 { // the INFO that reads the count
		t.Fatalf("60 cached or conditional requests sent %d commands to Redis: they rendered", n)
	}
	if r, _ := h.get("/rss/cond", "If-None-Match", etag); r.StatusCode != http.StatusOK {
		t.Fatalf("the Atom ETag matched the RSS document: %s", r.Status)
	}

	time.Sleep(2 * time.Millisecond)
	h.publish("cond", "2", "news")
	h.eventually("a change ends the 304s", func() bool {
		r, _ := h.get("/atom/cond", "If-None-Match", etag)
		return r.StatusCode == http.StatusOK && r.Header.Get("ETag") != etag
	})
}

func TestPagingWalksTheWholeFeed(t *testing.T) {
	h := newHarness(t, "entries: 20")
	h.create("many", thoonk.TypeFeed, nil)
	var want []string
	for i := range 45 {
		id := fmt.Sprintf("i%02d", i)
		h.publish("many", id, "item "+id)
		want = append([]string{"tag:feedbridge.invalid,2025:many/" + id}, want...) // newest first
		time.Sleep(time.Millisecond)                                               // distinct publish times
	}
	var got []string
	path, pages := "/atom/many", 0
	var second *atomDoc
	for path != "" {
		d, _ := h.atomOf(path)
		pages++
		if pages == 2 {
			second = d
		}
		if d.link("first") != h.bridge.hub.PublicURL+"/atom/many" {
			t.Fatalf("first link %q", d.link("first"))
		}
		got = append(got, d.ids()...)
		path = ""
		if next := d.link("next"); next != "" {
			path = local(t, next)
		}
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, ids %v\nwant %v", pages, got, want)
	}
	prev, _ := h.atomOf(local(t, second.link("previous")))
	if !slices.Equal(prev.ids(), want[:20]) {
		t.Fatalf("previous of page 2 is %v", prev.ids())
	}
	var jf struct {
		NextURL string `json:"next_url"`
	}
	_, body := h.ok("/json/many")
	if err := json.Unmarshal(body, &jf); err != nil || jf.NextURL == "" {
		t.Fatalf("JSON Feed next_url missing: %v %s", err, body)
	}
	_, body = h.ok("/rss/many")
	if !strings.Contains(string(body), `<atom:link rel="next"`) {
		t.Fatal("RSS next link missing")
	}
	for _, q := range []string{"?after=%%%", "?after=bm9wZQ", "?after=a&before=b"} {
		r, body := h.get("/atom/many" + q)
		if r.StatusCode != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %s %s", q, r.Status, body)
		}
	}
}

func TestRetractionsBecomeTombstones(t *testing.T) {
	h := newHarness(t, "tombstone_ttl: 2s")
	ctx := context.Background()
	h.create("t", thoonk.TypeFeed, nil)
	h.publish("t", "keep", "kept")
	h.publish("t", "gone", "retracted soon")
	h.ok("/atom/t")
	if err := h.store.Feed("t").Retract(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	var d *atomDoc
	h.eventually("the tombstone shows", func() bool { d, _ = h.atomOf("/atom/t"); return len(d.Deleted) == 1 })
	if d.Deleted[0].Ref != "tag:feedbridge.invalid,2025:t/gone" || len(d.Entries) != 1 || d.Updated < d.Deleted[0].When {
		t.Fatalf("tombstone %+v entries %v updated %s", d.Deleted, d.ids(), d.Updated)
	}
	h.eventually("the tombstone ages out after tombstone_ttl", func() bool {
		d, _ = h.atomOf("/atom/t")
		return len(d.Deleted) == 0
	})

	if err := h.store.Feed("t").Retract(ctx, "keep"); err != nil {
		t.Fatal(err)
	}
	h.eventually("the second tombstone shows", func() bool { d, _ = h.atomOf("/atom/t"); return len(d.Deleted) == 1 })
	h.publish("t", "keep", "back again")
	h.eventually("publishing the id again removes its tombstone", func() bool {
		d, _ = h.atomOf("/atom/t")
		return len(d.Deleted) == 0 && len(d.Entries) == 1
	})
}

func TestOnlyReadableFeedsAreServed(t *testing.T) {
	h := newHarness(t, `feeds: {include: ["*"], exclude: ["hidden*"]}`)
	h.create("open", thoonk.TypeFeed, map[string]string{"title": "Open <feed>"})
	h.create("hidden1", thoonk.TypeFeed, nil)
	h.create("secret:x", thoonk.TypeFeed, nil)
	h.create("q", thoonk.TypeQueue, nil)
	h.create("jobs", thoonk.TypeJob, nil)
	var notFound []byte
	for _, name := range []string{"hidden1", "secret:x", "q", "jobs", "missing", "a%00b", "%2E%2E"} {
		for _, format := range []string{formatAtom, formatRSS, formatJSON} {
			r, body := h.get("/" + format + "/" + name)
			if r.StatusCode != http.StatusNotFound {
				t.Fatalf("%s/%s: %s", format, name, r.Status)
			}
			if notFound != nil && string(body) != string(notFound) {
				t.Fatalf("404 bodies differ, telling hidden feeds apart: %s vs %s", body, notFound)
			}
			notFound = body
		}
	}
	if r, _ := h.get("/atom/open", "X", ""); r.StatusCode != http.StatusOK {
		t.Fatalf("open feed: %s", r.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/atom/open", nil)
	if r, err := h.srv.Client().Do(req); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", r, err)
	}

	_, page := h.ok("/atom/")
	html := string(page)
	if !strings.Contains(html, `<link rel="alternate" type="application/atom+xml" title="Open &lt;feed&gt;" href="`+h.bridge.hub.PublicURL+`/atom/open">`) {
		t.Fatalf("discovery page lacks the open feed:\n%s", html)
	}
	for _, hidden := range []string{"hidden1", "secret", "jobs", ">q<"} {
		if strings.Contains(html, hidden) {
			t.Fatalf("discovery page shows %s:\n%s", hidden, html)
		}
	}
	r, body := h.ok("/atom/?format=opml")
	var o struct {
		Outlines []struct {
			XMLURL string `xml:"xmlUrl,attr"`
		} `xml:"body>outline"`
	}
	if err := xml.Unmarshal(body, &o); err != nil || len(o.Outlines) != 1 || r.Header.Get("Content-Type") != "text/x-opml; charset=utf-8" {
		t.Fatalf("OPML: %v %s", err, body)
	}
	h.create("later", thoonk.TypeFeed, nil)
	h.eventually("a new feed is listed", func() bool {
		_, page := h.ok("/atom/")
		return strings.Contains(string(page), "/atom/later")
	})
}

// A reader that revalidates with If-Modified-Since alone must see every
// change, also one whose entry carries an older time of its own (an
// imported item) and a retraction that leaves no tombstone.
func TestLastModifiedMovesOnEveryChange(t *testing.T) {
	h := newHarness(t, "tombstone_ttl: 0s")
	ctx := context.Background()
	h.create("lm", thoonk.TypeFeed, nil)
	h.publish("lm", "old", `{"title":"Old","updated":"2020-01-01T00:00:00Z"}`)
	// age makes the feed's last change years old, as if untouched since,
	// and returns its Last-Modified.
	age := func() string {
		t.Helper()
		const since = "Fri, 01 Jan 2021 00:00:00 GMT"
		h.settle("/atom/lm")
		h.eventually("the feed is aged", func() bool { // again if a late event record wrote over it
			if err := h.rdb.HSet(ctx, prefixTimes+"lm", "c", time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()).Err(); err != nil {
				t.Fatal(err)
			}
			h.bridge.cache.reset()
			resp, _ := h.ok("/atom/lm")
			return resp.Header.Get("Last-Modified") == since
		})
		return since
	}
	changes := []struct {
		what   string
		change func()
		shows  func(d *atomDoc) bool
	}{
		{"a new item with an older time of its own", func() { h.publish("lm", "imported", `{"title":"Imported","updated":"2020-06-01T00:00:00Z"}`) },
			func(d *atomDoc) bool { return len(d.Entries) == 2 }},
		{"a retraction without tombstones", func() {
			if err := h.store.Feed("lm").Retract(ctx, "imported"); err != nil {
				t.Fatal(err)
			}
		}, func(d *atomDoc) bool { return len(d.Entries) == 1 }},
	}
	for _, c := range changes {
		since := age()
		c.change()
		h.eventually(c.what+" shows", func() bool { d, _ := h.atomOf("/atom/lm"); return c.shows(d) })
		if r, _ := h.get("/atom/lm", "If-Modified-Since", since); r.StatusCode != http.StatusOK {
			t.Fatalf("after %s, If-Modified-Since %s: %s, want 200 (the reader misses the change)", c.what, since, r.Status)
		}
	}
}

// Every request an operator's dashboard should see is counted in
// feedbridge_requests_in_total, like the other adapters' requests.
func TestRequestsAreCounted(t *testing.T) {
	h := newHarness(t, "")
	h.create("counted", thoonk.TypeFeed, nil)
	h.ok("/atom/counted")
	h.ok("/json/counted")
	h.ok("/atom/")
	h.get("/rss/missing")
	rec := httptest.NewRecorder()
	h.bridge.hub.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := `feedbridge_requests_in_total{adapter="atom"} 4`; !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("metrics lack %s:\n%s", want, rec.Body)
	}
}

// On a sorted feed an edit arrives as a publish event: it must not become
// the published time of an item whose publish the bridge never saw.
func TestSortedEditIsNotTakenForThePublish(t *testing.T) {
	h := newHarness(t, "")
	ctx := context.Background()
	h.create("board", thoonk.TypeSorted, nil)
	sf := h.store.Sorted("board")
	id, err := sf.Append(ctx, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	h.settle("/atom/board")
	// As if the item had been inserted while no bridge ran.
	if err := h.rdb.HDel(ctx, prefixTimes+"board", "p:"+id, "u:"+id).Err(); err != nil {
		t.Fatal(err)
	}
	h.bridge.cache.reset()
	d1, _ := h.atomOf("/atom/board")
	if d1.Entries[0].Published != "" {
		t.Fatalf("published %q for an item whose publish the bridge never saw", d1.Entries[0].Published)
	}
	time.Sleep(2 * time.Millisecond) // a later millisecond for the edit
	if err := sf.Edit(ctx, id, []byte("one, edited")); err != nil {
		t.Fatal(err)
	}
	var d2 *atomDoc
	h.eventually("the edit shows", func() bool {
		d2, _ = h.atomOf("/atom/board")
		return d2.Entries[0].Content.Body == "one, edited" && d2.Entries[0].Updated > d1.Entries[0].Updated
	})
	if d2.Entries[0].Published != "" {
		t.Fatalf("the edit became the published time %q", d2.Entries[0].Published)
	}
}

// Feed names and item ids are filled into the link templates as data: an
// id cannot add or change query parameters of the link a reader follows.
func TestLinkTemplatesEscapeQueryCharacters(t *testing.T) {
	h := newHarness(t, `entry_url: "https://app.example.org/item?feed={feed}&id={id}"
alternate_url: "https://app.example.org/feed?name={feed}"`)
	const feed, id = "a&b=c", "1&admin=1+2"
	h.create(feed, thoonk.TypeFeed, nil)
	h.publish(feed, id, "text")
	_, body, f := h.okFeed("/atom/" + url.PathEscape(feed))
	link, err := url.Parse(f.Items[0].Link)
	if err != nil {
		t.Fatal(err)
	}
	if q := link.Query(); len(q) != 2 || q.Get("feed") != feed || q.Get("id") != id {
		t.Fatalf("entry link %q has the query %v", f.Items[0].Link, q)
	}
	var d atomDoc
	if err := xml.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	alt, err := url.Parse(d.link("alternate"))
	if err != nil {
		t.Fatal(err)
	}
	if q := alt.Query(); len(q) != 1 || q.Get("name") != feed {
		t.Fatalf("alternate link %q has the query %v", d.link("alternate"), q)
	}
}
