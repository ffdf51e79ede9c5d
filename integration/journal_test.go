package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// The journal's end-to-end tests (issue 13): every protocol resumes from
// the per-feed journals in Redis, on any bridge process and after any
// restart. Events are compared as lines "type feed id item @position"
// (item and position when the change has them), with the journal's own
// entries as the reference for their revisions.

// journalBridge starts a bridge process serving REST (the admin token may
// do anything, anonymous clients read public:*) on the Redis that
// redisYAML (the redis section's value) names, with extra top-level
// config, and returns a REST client of it.
func journalBridge(t *testing.T, redisYAML string, rdb *redis.Client, extra string) *restBridge {
	t.Helper()
	addr := testenv.FreeAddr(t)
	config := fmt.Sprintf(`
log: {level: debug}
redis: %s
http: {listen: %s}
shutdown_timeout: 5s
acl:
  - {actors: ["rest:admin"], feeds: ["*"], allow: ["*"]}
  - {actors: ["*"], feeds: ["public:*"], allow: [read]}
rest:
  enabled: true
  anonymous: true
  tokens: [{name: admin, token: %q}]
  rate_limit: {per_token: {rate: 0}, per_ip: {rate: 0}}
  events: {heartbeat: 1s}
%s`, redisYAML, addr, restAdminToken, extra)
	return restClient(t, testenv.StartBridge(t, config, addr), rdb)
}

// restClient returns a REST client of a running bridge process, once it
// is ready; the document the binary serves is the one every answer is
// held to.
func restClient(t *testing.T, proc *testenv.Bridge, rdb *redis.Client) *restBridge {
	t.Helper()
	b := &restBridge{t: t, base: "http://" + proc.HTTPAddr, proc: proc, rdb: rdb}
	res, err := http.Get(b.base + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if b.check, err = resttest.New(resttest.Body(res)); err != nil {
		t.Fatal(err)
	}
	b.waitReady()
	return b
}

// journaledStore is a Go program's store on the Redis at addr that
// journals its changes as the bridge does (in the same script).
func journaledStore(t *testing.T, addr string) (*thoonk.Store, *redis.Client) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 10000, MaxItemBytes: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	return s, rdb
}

// must fails the test on an error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// changeLine renders a change for comparisons.
func changeLine(typ, feed, id string, item []byte, pos string) string {
	s := typ + " " + feed + " " + id
	if item != nil {
		s += " " + string(item)
	}
	if pos != "" {
		s += " @" + pos
	}
	return s
}

// eventData is the data of a stream's item event.
type eventData struct {
	Feed     string          `json:"feed"`
	ID       string          `json:"id"`
	Item     json.RawMessage `json:"item"`
	Encoding string          `json:"encoding"`
	Position string          `json:"position"`
	Rev      string          `json:"rev"`
}

// line renders the event's change, its item decoded.
func (d eventData) line(t *testing.T, typ string) string {
	t.Helper()
	var item []byte
	switch d.Encoding {
	case "":
	case "text":
		var s string
		must(t, json.Unmarshal(d.Item, &s))
		item = []byte(s)
	case "base64":
		var s string
		must(t, json.Unmarshal(d.Item, &s))
		b, err := base64.StdEncoding.DecodeString(s)
		must(t, err)
		item = b
	default:
		item = d.Item
	}
	return changeLine(typ, d.Feed, d.ID, item, d.Position)
}

// journalLines reads what the feeds' journals keep, behind the store's
// back (XRANGE): revision -> line.
func journalLines(t *testing.T, s *thoonk.Store, feeds ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range feeds {
		xs, err := s.Client().XRange(context.Background(), "feedbridge.journal:"+f, "-", "+").Result()
		must(t, err)
		for _, x := range xs {
			str := func(k string) string { v, _ := x.Values[k].(string); return v }
			var item []byte
			if v, ok := x.Values["item"].(string); ok {
				item = []byte(v)
			}
			out[x.ID] = changeLine(str("t"), f, str("id"), item, str("pos"))
		}
	}
	return out
}

// journalAfter reads a feed's journal entries after a revision.
func journalAfter(t *testing.T, s *thoonk.Store, feed, after string) []thoonk.Entry {
	t.Helper()
	var out []thoonk.Entry
	for {
		es, _, err := s.Journal(feed).Read(context.Background(), after, 1000)
		must(t, err)
		if len(es) == 0 {
			return out
		}
		out = append(out, es...)
		after = es[len(es)-1].Rev
	}
}

func entryLine(feed string, e thoonk.Entry) string {
	return changeLine(e.Type.String(), feed, e.ID, e.Item, e.Position)
}

// expectChanges reads exactly the changes want from a stream (a reset or
// anything else fails the test) and checks that each carries the
// revision of its change's journal entry, in increasing order (on a
// stream of one feed, single, also as its event id). It returns the last
// event.
func expectChanges(t *testing.T, next func() resttest.Event, s *thoonk.Store, single bool, want ...string) resttest.Event {
	t.Helper()
	var got []string
	var evs []resttest.Event
	var datas []eventData
	for range want {
		ev := next()
		var d eventData
		if ev.Type == "" || ev.Type == "reset" || json.Unmarshal([]byte(ev.Data), &d) != nil {
			t.Fatalf("after %q: want %q, got %+v", got, want[len(got)], ev)
		}
		got = append(got, d.line(t, ev.Type))
		evs, datas = append(evs, ev), append(datas, d)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stream changes\n got %q\nwant %q", got, want)
	}
	var feeds []string
	for _, d := range datas {
		if !slices.Contains(feeds, d.Feed) {
			feeds = append(feeds, d.Feed)
		}
	}
	journal := journalLines(t, s, feeds...)
	prev := thoonk.RevStart
	for i, d := range datas {
		if journal[d.Rev] != got[i] {
			t.Fatalf("event %q has rev %q, whose journal entry is %q", got[i], d.Rev, journal[d.Rev])
		}
		if !thoonk.RevBefore(prev, d.Rev) {
			t.Fatalf("event %q: rev %s after %s", got[i], d.Rev, prev)
		}
		if single && evs[i].ID != d.Rev {
			t.Fatalf("event %q: id %q, want its revision %q", got[i], evs[i].ID, d.Rev)
		}
		prev = d.Rev
	}
	return evs[len(evs)-1]
}

// settle proves a stream holds nothing more than was expected: a new
// change, published by publish(id, item), must be the very next event.
// It returns that event.
func settle(t *testing.T, next func() resttest.Event, s *thoonk.Store, single bool, feed, id string, publish func(id, item string)) resttest.Event {
	t.Helper()
	publish(id, id)
	return expectChanges(t, next, s, single, changeLine("publish", feed, id, []byte(id), ""))
}

// storePublisher publishes to a plain feed through a store.
func storePublisher(t *testing.T, s *thoonk.Store, feed string) func(id, item string) {
	return func(id, item string) {
		t.Helper()
		_, err := s.Feed(feed).Publish(context.Background(), []byte(item), id)
		must(t, err)
	}
}

// restPublisher publishes to a plain feed through a bridge's REST API
// and its worker.
func restPublisher(t *testing.T, b *restBridge, feed string) func(id, item string) {
	return func(id, item string) {
		t.Helper()
		b.do("POST", "/v1/feeds/"+url.PathEscape(feed)+"/items?id="+id, restAdminToken, item, "Prefer", "wait=10").want(t, 201, "")
	}
}

// tickRedis waits until Redis' clock has moved on by a millisecond.
func tickRedis(t *testing.T, rdb *redis.Client) { (&ircEnv{rdb: rdb}).tick(t) }

// TestJournalResumeAcrossProcesses: two bridge processes on one Redis. A
// client follows one feed, and another client several feeds, on process
// A; each stops, changes happen (through REST and the worker, and by a Go
// program journaling in its scripts), and each resumes with its last
// event id: on process B, then on A restarted after kill -9, then on A
// restarted after SIGTERM. Every time exactly the missed changes arrive,
// in order, with their journal revisions, no reset, and nothing more.
// (Both followed feeds change while the client is away, or hold its last
// event: TestJournalMultiFeedResumeQuietFeeds covers a quiet one.)
func TestJournalResumeAcrossProcesses(t *testing.T) {
	r := testenv.StartRedis(t)
	w, rdb := journaledStore(t, r.Addr)
	ctx := context.Background()
	must(t, w.Create(ctx, "public:j", thoonk.TypeFeed, nil))
	must(t, w.Create(ctx, "public:m1", thoonk.TypeFeed, nil))
	must(t, w.Create(ctx, "public:m2", thoonk.TypeSorted, nil))
	// the followed feeds' journals begin before the streams start
	_, err := w.Feed("public:m1").Publish(ctx, []byte("seed"), "s0")
	must(t, err)
	_, err = w.Sorted("public:m2").Append(ctx, []byte("seed2")) // id 1
	must(t, err)
	tickRedis(t, rdb)
	redisYAML := "{url: " + r.URL + "}"
	a := journalBridge(t, redisYAML, rdb, "")
	b := journalBridge(t, redisYAML, rdb, "")
	const one, several = "/v1/feeds/public:j/events", "/v1/events?feeds=public:m*"
	sentinel := 0
	// settleBoth ends the catch-up of both streams with a sentinel each
	settleBoth := func(nextS, nextM func() resttest.Event) (string, string) {
		t.Helper()
		sentinel++
		s := settle(t, nextS, w, true, "public:j", fmt.Sprintf("sentinel-%d", sentinel), storePublisher(t, w, "public:j"))
		m := settle(t, nextM, w, false, "public:m1", fmt.Sprintf("sentinel-%d", sentinel), storePublisher(t, w, "public:m1"))
		return s.ID, m.ID
	}

	resS, nextS := a.stream(one, "")
	resM, nextM := a.stream(several, "")
	if hs, hm := nextS(), nextM(); hs.ID == "" || hm.ID == "" {
		t.Fatalf("no resume points: %+v %+v", hs, hm)
	}
	lastS, lastM := settleBoth(nextS, nextM)
	resS.Body.Close()
	resM.Body.Close()

	// resumed on process B
	restPublisher(t, b, "public:j")("a2", "two")
	b.do("PUT", "/v1/feeds/public:j/items/sentinel-1", restAdminToken, "one, edited", "Prefer", "wait=10").want(t, 200, "")
	b.do("DELETE", "/v1/feeds/public:j/items/a2", restAdminToken, "", "Prefer", "wait=10").want(t, 200, "")
	b.do("POST", "/v1/feeds/public:m2/items", restAdminToken, "l3", "Prefer", "wait=10").want(t, 201, "") // id 2
	_, err = w.Feed("public:m1").Publish(ctx, []byte("b2"), "b2")
	must(t, err)
	b.do("POST", "/v1/feeds/public:m2/items/2/move", restAdminToken, `{"position":"begin:"}`, "Prefer", "wait=10").want(t, 200, "")
	must(t, w.Sorted("public:m2").Edit(ctx, "1", []byte("seed2, edited")))
	must(t, w.Feed("public:m1").Retract(ctx, "s0"))
	resS, nextS = b.stream(one, lastS)
	expectChanges(t, nextS, w, true, "publish public:j a2 two", "edit public:j sentinel-1 one, edited", "retract public:j a2")
	resM, nextM = b.stream(several, lastM)
	expectChanges(t, nextM, w, false, "publish public:m2 2 l3 @:end", "publish public:m1 b2 b2", "position public:m2 2 @begin:",
		"edit public:m2 1 seed2, edited", "retract public:m1 s0")
	lastS, lastM = settleBoth(nextS, nextM)
	resS.Body.Close()
	resM.Body.Close()

	// resumed on process A, restarted after kill -9 (changes meanwhile
	// through B's worker and the Go program)
	a.proc.Kill()
	b.do("PUT", "/v1/feeds/public:j/items/sentinel-2", restAdminToken, `{"n":2}`, "Content-Type", "application/json", "Prefer", "wait=10").want(t, 200, "")
	must(t, w.Feed("public:j").Retract(ctx, "sentinel-1"))
	_, err = w.Sorted("public:m2").PublishAfter(ctx, "1", []byte("l4")) // id 3
	must(t, err)
	b.do("DELETE", "/v1/feeds/public:m2/items/2", restAdminToken, "", "Prefer", "wait=10").want(t, 200, "")
	a.proc.Start()
	a.waitReady()
	resS, nextS = a.stream(one, lastS)
	expectChanges(t, nextS, w, true, `edit public:j sentinel-2 {"n":2}`, "retract public:j sentinel-1")
	resM, nextM = a.stream(several, lastM)
	expectChanges(t, nextM, w, false, "publish public:m2 3 l4 @1:", "retract public:m2 2")
	lastS, lastM = settleBoth(nextS, nextM)
	resS.Body.Close()
	resM.Body.Close()

	// resumed on process A, restarted after SIGTERM
	if err := a.proc.Terminate(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, a.proc.LogTail(20))
	}
	_, err = w.Feed("public:j").Publish(ctx, []byte("five"), "a5")
	must(t, err)
	must(t, w.Feed("public:m1").Edit(ctx, "b2", []byte("b2, edited")))
	must(t, w.Sorted("public:m2").Move(ctx, "3", thoonk.Position{Kind: thoonk.PosEnd}))
	a.proc.Start()
	a.waitReady()
	_, nextS = a.stream(one, lastS)
	expectChanges(t, nextS, w, true, "publish public:j a5 five")
	_, nextM = a.stream(several, lastM)
	expectChanges(t, nextM, w, false, "edit public:m1 b2 b2, edited", "position public:m2 3 @:end")
	settleBoth(nextS, nextM)
}

// TestJournalMultiFeedResumeQuietFeeds: a client follows several feeds
// (/v1/events?feeds=public:*) and resumes after a change it missed in
// one of them. Another followed feed, in turn: had changes before the
// client's position but none since; never had a change; had its first
// change ever while the client was away. None of these makes the
// position older than retention or the journal lost: the resume must
// deliver exactly the missed changes, never a reset.
func TestJournalMultiFeedResumeQuietFeeds(t *testing.T) {
	for _, tc := range []struct {
		name              string
		before, whileAway bool // the other feed changes before the stream starts, while the client is away
	}{
		{name: "no change since the position", before: true},
		{name: "never changed"},
		{name: "first change while away", whileAway: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t)
			w, rdb := journaledStore(t, r.Addr)
			ctx := context.Background()
			for _, f := range []string{"public:busy", "public:other"} {
				must(t, w.Create(ctx, f, thoonk.TypeFeed, nil))
				if f == "public:busy" || tc.before {
					_, err := w.Feed(f).Publish(ctx, []byte("0"), "0")
					must(t, err)
				}
			}
			tickRedis(t, rdb)
			a := journalBridge(t, "{url: "+r.URL+"}", rdb, "")
			res, next := a.stream("/v1/events?feeds=public:*", "")
			next()
			last := settle(t, next, w, false, "public:busy", "b1", storePublisher(t, w, "public:busy"))
			res.Body.Close()

			var want []string
			if tc.whileAway {
				storePublisher(t, w, "public:other")("o1", "o1")
				want = append(want, "publish public:other o1 o1")
				// (a resume orders changes of different feeds by their
				// revisions' milliseconds: within one, by feed name)
				tickRedis(t, rdb)
			}
			storePublisher(t, w, "public:busy")("b2", "b2")
			want = append(want, "publish public:busy b2 b2")
			_, next = a.stream("/v1/events?feeds=public:*", last.ID)
			expectChanges(t, next, w, false, want...)
			settle(t, next, w, false, "public:busy", "b3", storePublisher(t, w, "public:busy"))
		})
	}
}

// TestJournalForeignWriterWhileDown: a thoonk.py-style writer publishes,
// edits and retracts while no bridge process runs. When the bridge
// starts, its journaler records those changes in the feed's journal (and
// only then: nothing had recorded them before); GET .../changes lists
// them, an SSE client resuming from its last id gets them, and the IRC
// channel gets them posted.
func TestJournalForeignWriterWhileDown(t *testing.T) {
	e := startIRC(t, testenv.NgircdOptions{}, "news")
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#news")
	addr := testenv.FreeAddr(t)
	e.bridge = testenv.StartBridge(t, fmt.Sprintf(`
redis: {url: %s}
http: {listen: %s}
shutdown_timeout: 5s
acl:
  - {actors: ["*"], feeds: ["*"], allow: [read]}
rest: {enabled: true, anonymous: true}
atom: {enabled: false}
irc:
  enabled: true
  server: %s
  nick: %s
  rate: {interval: 0s}
  catch_up: 10
  reconnect: {min: 1s, max: 2s}
  channels:
    - name: "#news"
      feeds: [news]
`, e.redis.URL, addr, e.ngircd.Addr, ircBot), addr)
	alice.botJoined("#news")
	e.waitState(t, "up")
	rb := restClient(t, e.bridge, e.rdb)
	ctx := context.Background()
	py := func(id, item string) {
		t.Helper()
		_, err := thoonktest.PyPublish(ctx, e.rdb, "news", id, []byte(item))
		must(t, err)
	}
	res, next := rb.stream("/v1/feeds/news/events", "")
	next()
	py("e", "to edit")
	py("r", "to retract")
	last := expectChanges(t, next, e.store, true, "publish news e to edit", "publish news r to retract")
	res.Body.Close()
	for _, want := range []string{"[news] to edit", "[news] to retract"} {
		alice.expect(want, 10*time.Second, ircFromBot("PRIVMSG", "#news", want))
	}
	e.waitMark(t, "#news", "news", "r")
	if err := e.bridge.Terminate(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	py("n", "new while down")
	py("e", "edited while down")
	must(t, thoonktest.PyRetract(ctx, e.rdb, "news", "r"))
	if es := journalAfter(t, e.store, "news", last.ID); len(es) != 0 {
		t.Fatalf("journaled while no bridge ran: %+v", es)
	}
	e.bridge.Start()
	rb.waitReady()
	var entries []thoonk.Entry
	for deadline := time.Now().Add(15 * time.Second); len(entries) < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the journal after the restart holds %+v, want 3 changes\n%s", entries, e.bridge.LogTail(30))
		}
		entries = journalAfter(t, e.store, "news", last.ID)
	}
	var lines []string
	for _, en := range entries {
		lines = append(lines, entryLine("news", en))
	}
	want := []string{"edit news e edited while down", "publish news n new while down", "retract news r"}
	if got := slices.Sorted(slices.Values(lines)); !slices.Equal(got, want) {
		t.Fatalf("journaled after the restart\n got %q\nwant (in any order) %q", lines, want)
	}

	// GET .../changes lists them
	ch := rb.do("GET", "/v1/feeds/news/changes?since="+last.ID, "", "")
	ch.want(t, 200, "")
	var page struct {
		Changes []struct {
			Type string `json:"type"`
			eventData
		} `json:"changes"`
		Next string `json:"next"`
		More bool   `json:"more"`
	}
	must(t, json.Unmarshal(ch.body, &page))
	var listed []string
	for _, c := range page.Changes {
		listed = append(listed, c.line(t, c.Type))
	}
	if !slices.Equal(listed, lines) || page.More || page.Next != entries[2].Rev {
		t.Fatalf("changes since %s: %s\nwant %q, next %s", last.ID, ch.body, lines, entries[2].Rev)
	}

	// an SSE client resuming gets them, then the next change live
	_, next = rb.stream("/v1/feeds/news/events", last.ID)
	expectChanges(t, next, e.store, true, lines...)
	settle(t, next, e.store, true, "news", "after", py)

	// and the IRC channel: the bot rejoins and posts them in journal order
	alice.botJoined("#news")
	posted := map[string]string{
		"publish news n new while down": "[news] new while down",
		"edit news e edited while down": "[news] edited: edited while down",
		"retract news r":                "[news] retracted r",
	}
	for _, l := range append(lines, "after") {
		want := posted[l]
		if l == "after" {
			want = "[news] after"
		}
		if m := alice.expect(want, 20*time.Second, ircFromBot("PRIVMSG", "#news", "[news] ")); !strings.HasPrefix(m.Trailing(), want) {
			t.Errorf("the channel got %q, want %q", m.Trailing(), want)
		}
	}
}

// jobResult polls a job's status through REST until it has a result.
func jobResult(t *testing.T, b *restBridge, loc string) core.Result {
	t.Helper()
	var st core.JobStatus
	for deadline := time.Now().Add(15 * time.Second); st.Result == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s never finished: %+v\n%s", loc, st, b.proc.LogTail(30))
		}
		a := b.do("GET", loc, restAdminToken, "")
		a.want(t, 200, "")
		must(t, json.Unmarshal(a.body, &st))
	}
	return *st.Result
}

// itemNow reads an item through REST: its text and its ETag.
func itemNow(t *testing.T, b *restBridge, path string) (string, string) {
	t.Helper()
	a := b.do("GET", path, "", "")
	a.want(t, 200, "")
	var it struct {
		Item json.RawMessage `json:"item"`
	}
	must(t, json.Unmarshal(a.body, &it))
	var s string
	must(t, json.Unmarshal(it.Item, &s))
	return s, a.header.Get("ETag")
}

// TestJournalStaleRevision: an edit with If-Match naming an old revision
// is refused at once with 412 naming the current one; nothing changes and
// no job is stored. And the race: the If-Match revision is current when
// the request is accepted, but another change lands before the worker
// applies the job: the job's result is 412 with the current revision, and
// the item keeps the other change.
func TestJournalStaleRevision(t *testing.T) {
	r := testenv.StartRedis(t)
	w, rdb := journaledStore(t, r.Addr)
	ctx := context.Background()
	must(t, w.Create(ctx, "public:doc", thoonk.TypeFeed, nil))
	_, err := w.Feed("public:doc").Publish(ctx, []byte("v1"), "x")
	must(t, err)
	// process A accepts requests; no process applies them yet
	a := journalBridge(t, "{url: "+r.URL+"}", rdb, "worker: {enabled: false}\n")
	const path = "/v1/feeds/public:doc/items/x"
	_, etag1 := itemNow(t, a, path)
	_, err = w.Feed("public:doc").Publish(ctx, []byte("v2"), "x")
	must(t, err)
	rev2, err := w.Journal("public:doc").Last(ctx)
	must(t, err)
	if etag1 == `"`+rev2+`"` || etag1 == "" {
		t.Fatalf("ETag %s before the edit, revision %s after it", etag1, rev2)
	}

	jobs := a.jobs()
	p := a.do("PUT", path, restAdminToken, "v3", "If-Match", etag1)
	p.want(t, 412, "precondition-failed")
	if !strings.Contains(string(p.body), `\"`+rev2+`\"`) {
		t.Errorf("the 412 does not name the current version %q: %s", rev2, p.body)
	}
	if item, etag := itemNow(t, a, path); item != "v2" || etag != `"`+rev2+`"` || a.jobs() != jobs {
		t.Fatalf("after a stale If-Match: item %q, ETag %s, %d jobs stored", item, etag, a.jobs()-jobs)
	}

	// the race: accepted with the current revision, overtaken before applied
	p = a.do("PUT", path, restAdminToken, "v3", "If-Match", `"`+rev2+`"`)
	p.want(t, 202, "")
	_, err = w.Feed("public:doc").Publish(ctx, []byte("v2b"), "x")
	must(t, err)
	rev3, err := w.Journal("public:doc").Last(ctx)
	must(t, err)
	journalBridge(t, "{url: "+r.URL+"}", rdb, "") // B: its worker applies the job
	res := jobResult(t, a, p.header.Get("Location"))
	if res.OK || res.Code != 412 || res.Rev != rev3 {
		t.Fatalf("the overtaken job's result: %+v, want 412 with revision %s", res, rev3)
	}
	if item, etag := itemNow(t, a, path); item != "v2b" || etag != `"`+rev3+`"` {
		t.Fatalf("after the overtaken job: item %q, ETag %s; want v2b, %q", item, etag, rev3)
	}
	if last, _ := w.Journal("public:doc").Last(ctx); last != rev3 {
		t.Fatalf("the refused job journaled a change: last revision %s, want %s", last, rev3)
	}
	// the same edit on the current revision goes through
	a.do("PUT", path, restAdminToken, "v4", "If-Match", `"`+rev3+`"`, "Prefer", "wait=10").want(t, 200, "")
	if item, _ := itemNow(t, a, path); item != "v4" {
		t.Fatalf("an edit on the current revision left %q", item)
	}
}

// TestJournalRetention: with journal.max_events 100, a client resuming
// from before more changes than that gets a reset saying it is too far
// behind, with the position to go on from (its stream then continues
// exactly from there), on a stream of one feed and of several; GET
// .../changes from there answers 410 naming the revision to start again
// from, which then works. After Redis restarts without persistence (the
// journal lost), a resume is a reset saying history-unavailable.
func TestJournalRetention(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := thoonk.NewStore(rdb, thoonk.StoreOptions{}) // reads only
	must(t, err)
	ctx := context.Background()
	must(t, s.Create(ctx, "public:ret", thoonk.TypeFeed, nil))
	a := journalBridge(t, "{url: "+r.URL+"}", rdb, "journal: {max_events: 100}\n")
	const one, several = "/v1/feeds/public:ret/events", "/v1/events?feeds=public:ret"
	resS, nextS := a.stream(one, "")
	resM, nextM := a.stream(several, "")
	nextS()
	nextM()
	restPublisher(t, a, "public:ret")("first", "first")
	lastS := expectChanges(t, nextS, s, true, "publish public:ret first first")
	lastM := expectChanges(t, nextM, s, false, "publish public:ret first first")
	resS.Body.Close()
	resM.Body.Close()

	// 250 changes through the bridge's worker: more than the journal keeps
	var wg sync.WaitGroup
	for g := range 5 {
		wg.Go(func() {
			for i := range 50 {
				a.do("POST", fmt.Sprintf("/v1/feeds/public:ret/items?id=i%d-%d", g, i), restAdminToken, "x", "Prefer", "wait=10").want(t, 201, "")
			}
		})
	}
	wg.Wait()
	if n := rdb.XLen(ctx, "feedbridge.journal:public:ret").Val(); n < 100 || n > 100+64 {
		t.Fatalf("the journal holds %d entries with max_events 100", n)
	}
	head, err := s.Journal("public:ret").Last(ctx)
	must(t, err)

	// GET .../changes from before: 410 naming where to start again
	g := a.do("GET", "/v1/feeds/public:ret/changes?since="+lastS.ID, "", "")
	g.want(t, 410, "history-gone")
	if !strings.Contains(string(g.body), "since="+head) {
		t.Fatalf("the 410 does not name the journal's last revision %s: %s", head, g.body)
	}
	g = a.do("GET", "/v1/feeds/public:ret/changes?since="+head, "", "")
	g.want(t, 200, "")
	if !strings.Contains(string(g.body), `"changes":[]`) || !strings.Contains(string(g.body), `"next":"`+head+`"`) {
		t.Fatalf("changes since the named revision: %s", g.body)
	}

	// the streams reset, saying why, then go on from the reset's position
	_, nextS = a.stream(one, lastS.ID)
	reset := nextS()
	if reset.Type != "reset" || reset.Data != `{"reason":"too-far-behind"}` || reset.ID != head {
		t.Fatalf("resume from before retention: %+v, want a too-far-behind reset at %s", reset, head)
	}
	_, nextM = a.stream(several, lastM.ID)
	if reset := nextM(); reset.Type != "reset" || reset.Data != `{"reason":"too-far-behind"}` {
		t.Fatalf("resume of several feeds from before retention: %+v, want a too-far-behind reset", reset)
	}
	settle(t, nextS, s, true, "public:ret", "after", restPublisher(t, a, "public:ret"))
	expectChanges(t, nextM, s, false, "publish public:ret after after")

	// Redis restarts without persistence: the journal is lost and begins
	// again; a position from before is history-unavailable, not resumed
	r.Restart()
	must(t, s.Create(ctx, "public:ret", thoonk.TypeFeed, nil))
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res := a.do("POST", "/v1/feeds/public:ret/items?id=reborn", restAdminToken, "reborn", "Prefer", "wait=10")
		if res.status == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish after Redis restarted: %d %s\n%s", res.status, res.body, a.proc.LogTail(20))
		}
	}
	_, nextS = a.stream(one, head)
	if reset := nextS(); reset.Type != "reset" || reset.Data != `{"reason":"history-unavailable"}` {
		t.Fatalf("resume from a lost journal: %+v, want a history-unavailable reset", reset)
	}
	a.do("GET", "/v1/feeds/public:ret/changes?since="+head, "", "").want(t, 410, "history-gone")
}

// TestJournalClusterSlot: on a real Redis Cluster (3 masters, 3
// replicas), a feed named with a hash tag keeps its journal in its own
// slot: the journal's keys hash to the slot of feed.ids, and the journal
// stream is on that slot's master, holding every change. A client of the
// feed resumes exactly there (the changes made through REST and the
// worker, whose queue lives in another slot).
func TestJournalClusterSlot(t *testing.T) {
	c := testenv.StartRedisClusterWithReplicas(t, 3, 1)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = cc.Close() })
	s, err := thoonk.NewStore(cc, thoonk.StoreOptions{})
	must(t, err)
	ctx := context.Background()
	const feed = "public:{team7}:tasks"
	queue := "{feedbridge}.actions"
	if c.MasterOf(feed) == c.MasterOf(queue) {
		t.Fatalf("want the feed on another master than the queue")
	}
	must(t, s.Create(ctx, feed, thoonk.TypeFeed, nil))
	a := journalBridge(t, fmt.Sprintf("{url: %q, mode: cluster}", clusterURL(c)), nil,
		fmt.Sprintf("actions: {queue: %q, custom_queue: \"{feedbridge}.custom\"}\n", queue))
	seg := url.PathEscape(feed)
	pub := restPublisher(t, a, feed)
	res, next := a.stream("/v1/feeds/"+seg+"/events", "")
	next()
	last := settle(t, next, s, true, feed, "t1", pub)
	res.Body.Close()
	pub("t2", "two")
	a.do("PUT", "/v1/feeds/"+seg+"/items/t1", restAdminToken, "one, edited", "Prefer", "wait=10").want(t, 200, "")
	a.do("DELETE", "/v1/feeds/"+seg+"/items/t2", restAdminToken, "", "Prefer", "wait=10").want(t, 200, "")
	_, next = a.stream("/v1/feeds/"+seg+"/events", last.ID)
	expectChanges(t, next, s, true, "publish "+feed+" t2 two", "edit "+feed+" t1 one, edited", "retract "+feed+" t2")
	settle(t, next, s, true, feed, "t3", pub)

	slot := cc.ClusterKeySlot(ctx, "feed.ids:"+feed).Val()
	for _, k := range []string{"feedbridge.journal:", "feedbridge.revs:", "feedbridge.journal.meta:"} {
		if got := cc.ClusterKeySlot(ctx, k+feed).Val(); got != slot {
			t.Errorf("%s%s is in slot %d, the feed in slot %d", k, feed, got, slot)
		}
	}
	master := c.MasterOf("feed.ids:" + feed)
	node := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer node.Close()
	typ, err := node.Type(ctx, "feedbridge.journal:"+feed).Result()
	must(t, err)
	n, err := node.XLen(ctx, "feedbridge.journal:"+feed).Result()
	must(t, err)
	if typ != "stream" || n != 5 {
		t.Fatalf("on the feed's master %s the journal is a %s of %d entries, want a stream of 5", master.Addr, typ, n)
	}
}
