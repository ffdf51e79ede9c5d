package rest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// waitJob polls a job's status until it is finished and returns it.
func (e *env) waitJob(location string) core.JobStatus {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.call("GET", location, tokAdmin, "")
		r.want(e.t, 200)
		var st core.JobStatus
		if err := json.Unmarshal(r.body, &st); err != nil {
			e.t.Fatal(err)
		}
		// the result reaches the status record just after the job finishes
		if st.State == thoonk.JobFinished && st.Result != nil || time.Now().After(deadline) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	parse := func(y string) (core.Adapter, error) {
		sec, err := core.ParseYAML("bridge.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return New(sec.Sub("rest"))
	}
	if a, err := parse("rest:\n  enabled: false\n"); a != nil || err != nil {
		t.Fatalf("disabled: %v %v", a, err)
	}
	if a, err := parse("log: {}\n"); a != nil || err != nil {
		t.Fatalf("absent: %v %v", a, err)
	}
	a, err := parse("rest:\n  enabled: true\n")
	if err != nil || a == nil || a.Name() != "rest" {
		t.Fatalf("defaults: %v %v", a, err)
	}
	t.Setenv("REST_TEST_TOKEN", "from-the-environment-123")
	a, err = parse("rest:\n  enabled: true\n  tokens: [{name: ci, token: \"${REST_TEST_TOKEN}\"}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := a.(*Bridge).tokens.Lookup("from-the-environment-123"); !ok || name != "ci" {
		t.Fatalf("env token: %q %v", name, ok)
	}
	// every value wrong; an unknown key is reported before the values
	const bad = `rest:
  enabled: false
  tokens:
    - {name: "bad name", token: short}
    - {name: ok, token: "same-token-0123456789"}
    - {name: ok, token: "same-token-0123456789"}
  max_body_bytes: 0
  rate_limit: {per_ip: {rate: 5, burst: 0}}
  cors: {allowed_origins: ["https://a.example/path"]}
  trusted_proxies: ["nonsense"]
  events: {heartbeat: 10ms, replay_events: 0}
`
	_, err = parse(bad + "  bogus: 1\n")
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"unknown key \"bogus\"",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = parse(bad)
	for _, want := range []string{
		"bridge.yaml:4: rest.tokens[0].name", "rest.tokens[0].token: is 5 characters", "rest.tokens[2].name: \"ok\" is used twice",
		"rest.tokens[2].token: is the same", "rest.max_body_bytes", "rest.rate_limit.per_ip.burst",
		"rest.cors.allowed_origins[0]", "rest.trusted_proxies[0]", "rest.events.heartbeat", "rest.events.replay_events",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "same-token") {
		t.Errorf("an error shows a token: %v", err)
	}
}

// names that must work as single path segments.
var oddNames = []string{"team:353:member:12:tasks", "plus+sign", "a/b/c", "with space", "ünïcødé ☃", "100%41", "q?x=1#frag"}

func TestFeedsAndExposure(t *testing.T) {
	e := newEnv(t, baseConfig)
	for _, n := range oddNames {
		e.create(n, thoonk.TypeFeed, map[string]string{"title": "odd " + n})
	}
	e.create("public:news", thoonk.TypeSorted, nil)
	e.create("secret:plans", thoonk.TypeFeed, nil)

	for _, n := range oddNames {
		r := e.call("GET", "/v1/feeds/"+url.PathEscape(n), tokReader, "")
		r.want(t, 200)
		var f FeedJSON
		_ = json.Unmarshal(r.body, &f)
		if f.Name != n || f.Config["title"] != "odd "+n || f.Type != thoonk.TypeFeed {
			t.Errorf("feed %q: %s", n, r.body)
		}
	}
	// unknown, hidden (action queue), unreadable (ACL) all look the same
	var bodies []string
	for _, c := range []struct{ feed, token string }{
		{"nope", tokReader}, {"feedbridge.actions", tokAdmin}, {"secret:plans", ""}, {"nope", ""},
	} {
		r := e.call("GET", "/v1/feeds/"+url.PathEscape(c.feed), c.token, "")
		r.wantProblem(t, 404, "not-found")
		var p Problem
		_ = json.Unmarshal(r.body, &p)
		p.Instance = ""
		b, _ := json.Marshal(p)
		bodies = append(bodies, string(b))
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("404s differ: %s vs %s", b, bodies[0])
		}
	}
	e.call("GET", "/v1/feeds/"+url.PathEscape("bad\x01name"), tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", "/v1/feeds/"+url.PathEscape("no*such"), tokReader, "").wantProblem(t, 404, "not-found")

	// listing: the anonymous actor sees public feeds only; paging by name
	r := e.call("GET", "/v1/feeds", "", "")
	r.want(t, 200)
	var fl FeedList
	_ = json.Unmarshal(r.body, &fl)
	if fl.Total != 1 || len(fl.Feeds) != 1 || fl.Feeds[0].Name != "public:news" || fl.Feeds[0].Type != thoonk.TypeSorted {
		t.Fatalf("anonymous listing: %s", r.body)
	}
	var seen []string
	next := "/v1/feeds?limit=3"
	for next != "" {
		r := e.call("GET", next, tokReader, "")
		r.want(t, 200)
		var fl FeedList
		_ = json.Unmarshal(r.body, &fl)
		if fl.Total != len(oddNames)+2 {
			t.Fatalf("total %d: %s", fl.Total, r.body)
		}
		for _, f := range fl.Feeds {
			seen = append(seen, f.Name)
		}
		next = linkNext(r.Header.Get("Link"))
	}
	if len(seen) != len(oddNames)+2 || strings.Contains(strings.Join(seen, ","), "feedbridge.") {
		t.Fatalf("paged listing: %q", seen)
	}
	e.call("GET", "/v1/feeds?limit=0", tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", "/v1/feeds?cursor=!!", tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", "/v1/nothing", tokReader, "").wantProblem(t, 404, "not-found")
	e.call("PATCH", "/v1/feeds/x", tokReader, "").wantProblem(t, 405, "method-not-allowed")
	r = e.call("GET", "/v1/problems/not-found", "", "")
	r.want(t, 200)
	e.call("GET", "/v1/problems/nope", "", "").wantProblem(t, 404, "not-found")
	r = e.call("GET", "/v1/openapi.json", "", "")
	if r.StatusCode != 200 || !strings.Contains(string(r.body), `"openapi": "3.1.0"`) {
		t.Fatalf("openapi: %d", r.StatusCode)
	}
}

// linkNext returns the rel="next" target of a Link header, or "".
func linkNext(h string) string {
	for l := range strings.SplitSeq(h, ", ") {
		if strings.HasSuffix(l, `rel="next"`) {
			return strings.TrimSuffix(strings.TrimPrefix(strings.Split(l, ">")[0], "<"), "")
		}
	}
	return ""
}

func TestItems(t *testing.T) {
	e := newEnv(t, baseConfig)
	ctx := context.Background()
	feed := "team:353:member:12/tasks"
	e.create(feed, thoonk.TypeFeed, nil)
	f := e.store.Feed(feed)
	payloads := map[string]string{"j": `{"a": [1, 2]}`, "t": "plain text", "b": "\xff\xfe\x00bin"}
	var order []string
	for i := range 7 {
		id := fmt.Sprintf("i%d", i)
		data := []byte(fmt.Sprintf(`{"n":%d}`, i))
		if i < 3 {
			id = []string{"j", "t", "b"}[i]
			data = []byte(payloads[id])
		}
		if _, err := f.Publish(ctx, data, id); err != nil {
			t.Fatal(err)
		}
		order = append([]string{id}, order...) // newest first
		time.Sleep(2 * time.Millisecond)       // distinct publish times
	}
	base := "/v1/feeds/" + url.PathEscape(feed) + "/items"
	var got []string
	next := base + "?limit=3"
	for next != "" {
		r := e.call("GET", next, tokReader, "")
		r.want(t, 200)
		var il ItemList
		_ = json.Unmarshal(r.body, &il)
		if il.Total != 7 || il.Type != thoonk.TypeFeed {
			t.Fatalf("page: %s", r.body)
		}
		for _, it := range il.Items {
			got = append(got, it.ID)
			if it.Published == nil || it.Position == nil || it.Cursor == "" {
				t.Errorf("item lacks fields: %+v", it)
			}
			switch it.ID {
			case "j":
				if it.Encoding != "json" || string(it.Item) != `{"a":[1,2]}` {
					t.Errorf("json item: %s %s", it.Encoding, it.Item)
				}
			case "t":
				if it.Encoding != "text" || string(it.Item) != `"plain text"` {
					t.Errorf("text item: %s %s", it.Encoding, it.Item)
				}
			case "b":
				if it.Encoding != "base64" || string(it.Item) != `"//4AYmlu"` {
					t.Errorf("binary item: %s %s", it.Encoding, it.Item)
				}
			}
		}
		next = linkNext(r.Header.Get("Link"))
	}
	if strings.Join(got, ",") != strings.Join(order, ",") {
		t.Fatalf("order %v, want %v", got, order)
	}

	// one item: strong ETag, 304, new ETag after an edit
	r := e.call("GET", base+"/j", tokReader, "")
	r.want(t, 200)
	etag := r.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("etag %q", etag)
	}
	e.call("GET", base+"/j", tokReader, "", "If-None-Match", etag).want(t, 304)
	e.call("GET", base+"/j", tokReader, "", "If-None-Match", `"other"`).want(t, 200)
	if err := f.Edit(ctx, "j", []byte(`{"a":3}`)); err != nil {
		t.Fatal(err)
	}
	r = e.call("GET", base+"/j", tokReader, "", "If-None-Match", etag)
	r.want(t, 200)
	if r.Header.Get("ETag") == etag {
		t.Fatal("etag unchanged after edit")
	}
	e.call("GET", base+"/missing", tokReader, "").wantProblem(t, 404, "not-found")
	e.call("GET", base+"?cursor=xyz", tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", base+"?cursor=a&after=b", tokReader, "").wantProblem(t, 400, "bad-request")
	e.call("GET", base+"?wait=x", tokReader, "").wantProblem(t, 400, "bad-request")

	// sorted feed: position order, prev links
	e.create("public:list", thoonk.TypeSorted, nil)
	s := e.store.Sorted("public:list")
	var ids []string
	for i := range 5 {
		id, err := s.Append(ctx, []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := s.Move(ctx, ids[4], thoonk.Position{Kind: thoonk.PosBegin}); err != nil {
		t.Fatal(err)
	}
	r = e.call("GET", "/v1/feeds/public:list/items?limit=2&cursor=", "", "")
	r.want(t, 200)
	var il ItemList
	_ = json.Unmarshal(r.body, &il)
	if il.Type != thoonk.TypeSorted || len(il.Items) != 2 || il.Items[0].ID != ids[4] || il.Items[1].ID != ids[0] || il.Items[0].Published != nil {
		t.Fatalf("sorted page: %s", r.body)
	}
	r2 := e.call("GET", linkNext(r.Header.Get("Link")), "", "")
	if !strings.Contains(r2.Header.Get("Link"), `rel="prev"`) {
		t.Fatalf("no prev link: %q", r2.Header.Get("Link"))
	}
	// a job feed is not a feed of items
	e.create("jobs:x", thoonk.TypeJob, nil)
	e.call("GET", "/v1/feeds/jobs:x/items", tokReader, "").wantProblem(t, 409, "conflict")
	e.call("GET", "/v1/feeds/jobs:x/items/1", tokReader, "").wantProblem(t, 409, "conflict")
}

func TestActions(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("tasks", thoonk.TypeFeed, nil)
	e.create("public:board", thoonk.TypeSorted, nil)
	e.create("secret:x", thoonk.TypeFeed, nil)

	// publish: 202, Location, then the worker's result and the item
	r := e.call("POST", "/v1/feeds/tasks/items?id=t1", tokAdmin, `{"title":"write tests"}`, "Content-Type", "application/json")
	r.want(t, 202)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/jobs/feedbridge.actions/") {
		t.Fatalf("location %q", loc)
	}
	st := e.waitJob(loc)
	if st.Result == nil || !st.Result.OK || st.Result.Code != 201 || st.Result.ID != "t1" {
		t.Fatalf("job: %+v", st)
	}
	item := e.call("GET", "/v1/feeds/tasks/items/t1", tokAdmin, "")
	item.want(t, 200)
	if !strings.Contains(string(item.body), `"item":{"title":"write tests"}`) {
		t.Fatalf("item: %s", item.body)
	}
	// Prefer: wait answers with the result: 201 and the item's Location
	r = e.call("POST", "/v1/feeds/public:board/items", tokAdmin, "first", "Prefer", "wait=10")
	r.want(t, 201)
	if !strings.HasPrefix(r.Header.Get("Location"), "/v1/feeds/public:board/items/") || r.Header.Get("Preference-Applied") != "wait=10" {
		t.Fatalf("headers: %v", r.Header)
	}
	var js core.JobStatus
	_ = json.Unmarshal(r.body, &js)
	boardID := js.Result.ID
	// edit with a current If-Match, then a stale one: 412 and no job
	cur := e.call("GET", "/v1/feeds/public:board/items/"+boardID, tokAdmin, "")
	e.call("PUT", "/v1/feeds/public:board/items/"+boardID, tokAdmin, "second", "If-Match", cur.Header.Get("ETag"), "Prefer", "wait=10").want(t, 200)
	before := e.jobCount()
	e.call("PUT", "/v1/feeds/public:board/items/"+boardID, tokAdmin, "third", "If-Match", cur.Header.Get("ETag")).wantProblem(t, 412, "precondition-failed")
	e.call("DELETE", "/v1/feeds/public:board/items/"+boardID, tokAdmin, "", "If-Match", cur.Header.Get("ETag")).wantProblem(t, 412, "precondition-failed")
	e.call("DELETE", "/v1/feeds/public:board/items/gone", tokAdmin, "", "If-Match", "*").wantProblem(t, 412, "precondition-failed")
	// bad input: problems, and nothing created
	e.call("POST", "/v1/feeds/tasks/items", tokAdmin, `{"broken`, "Content-Type", "application/json").wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/tasks/items", tokAdmin, strings.Repeat("x", 5000)).wantProblem(t, 413, "too-large")
	e.call("POST", "/v1/feeds/tasks/items", tokAdmin, strings.Repeat("x", 3000)).wantProblem(t, 413, "too-large") // over actions.max_item_bytes
	e.call("POST", "/v1/feeds/tasks/items", tokAdmin, "").wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/tasks/items?id=%0Abad", tokAdmin, "x").wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/tasks/items/x/move", tokAdmin, `{"position":":end"}`).wantProblem(t, 409, "conflict")
	e.call("POST", "/v1/feeds/public:board/items/x/move", tokAdmin, `{"where":1}`).wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/public:board/items/x/move", tokAdmin, `{"position":":end"}}`).wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/public:board/items/x/move", tokAdmin, `{"position":"sideways"}`).wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/public:board/items/x/move", tokAdmin, "position=:end", "Content-Type", "application/x-www-form-urlencoded").wantProblem(t, 415, "unsupported-media")
	e.call("POST", "/v1/feeds/nope/items", tokAdmin, "x").wantProblem(t, 404, "not-found")
	e.call("POST", "/v1/feeds/feedbridge.actions/items", tokAdmin, "x").wantProblem(t, 404, "not-found")
	// auth: bad token 401, reader may read but not write 403, anonymous
	// may read public feeds (403) but not secret ones (404)
	r = e.call("POST", "/v1/feeds/tasks/items", "wrong-token-0123456789", "x")
	r.wantProblem(t, 401, "unauthorized")
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
	}
	e.call("GET", "/v1/feeds", "wrong-token-0123456789", "").wantProblem(t, 401, "unauthorized")
	e.call("POST", "/v1/feeds/tasks/items", tokReader, "x").wantProblem(t, 403, "forbidden")
	e.call("POST", "/v1/feeds/public:board/items", "", "x").wantProblem(t, 403, "forbidden")
	e.call("POST", "/v1/feeds/secret:x/items", "", "x").wantProblem(t, 404, "not-found")
	if n := e.jobCount(); n != before {
		t.Fatalf("rejected requests created %d jobs", n-before)
	}

	// move with wait: 200
	id2 := publishWait(t, e, "public:board", "other")
	e.call("POST", "/v1/feeds/public:board/items/"+id2+"/move", tokAdmin, `{"position":"begin:"}`, "Prefer", "respond-async, wait=10").want(t, 200)
	// the worker's failure comes back as a problem with its status
	r = e.call("PUT", "/v1/feeds/tasks/items/missing", tokAdmin, "x", "Prefer", "wait=10")
	r.wantProblem(t, 404, "not-found")
	if !strings.Contains(string(r.body), `"job":{"queue":"feedbridge.actions"`) {
		t.Fatalf("failure lacks its job: %s", r.body)
	}
	// custom verbs become jobs; the built-in worker does not handle them
	r = e.call("POST", "/v1/feeds/tasks/actions/archive", tokAdmin, `{"id":"t1","args":["soon"],"item":"why"}`)
	r.want(t, 202)
	e.call("POST", "/v1/feeds/tasks/actions/archive", tokAdmin, `{"args":["x"]}`, "Prefer", "wait=10").wantProblem(t, 501, "not-implemented")
	e.call("POST", "/v1/feeds/tasks/actions/Bad!", tokAdmin, ``).wantProblem(t, 400, "bad-request")
	e.call("POST", "/v1/feeds/tasks/actions/x", tokAdmin, `{"item":"a","item_base64":"YQ=="}`).wantProblem(t, 400, "bad-request")
	// retract through DELETE
	e.call("DELETE", "/v1/feeds/tasks/items/t1", tokAdmin, "", "Prefer", "wait=10").want(t, 200)
	e.call("GET", "/v1/feeds/tasks/items/t1", tokAdmin, "").wantProblem(t, 404, "not-found")
	// job status: unknown queue and unknown job 404
	e.call("GET", "/v1/jobs/other/1", tokAdmin, "").wantProblem(t, 404, "not-found")
	e.call("GET", "/v1/jobs/feedbridge.actions/nope", tokAdmin, "").wantProblem(t, 404, "not-found")
}

// publishWait publishes as admin and returns the new item's id.
func publishWait(t *testing.T, e *env, feed, item string) string {
	t.Helper()
	r := e.call("POST", "/v1/feeds/"+url.PathEscape(feed)+"/items", tokAdmin, item, "Prefer", "wait=10")
	r.want(t, 201)
	var js core.JobStatus
	_ = json.Unmarshal(r.body, &js)
	return js.Result.ID
}

func TestActorStamped(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("routed", thoonk.TypeFeed, nil)
	// "stamp" goes to feedbridge.app, which no worker serves here
	r := e.call("POST", "/v1/feeds/routed/actions/stamp", tokAdmin, `{"args":["actor=rest:root"],"item":{"actor":{"protocol":"rest","id":"root"}}}`)
	r.want(t, 202)
	if !strings.HasPrefix(r.Header.Get("Location"), "/v1/jobs/feedbridge.app/") {
		t.Fatalf("location %q", r.Header.Get("Location"))
	}
	var js core.JobStatus
	_ = json.Unmarshal(r.body, &js)
	raw, err := e.store.Jobs("feedbridge.app").Item(context.Background(), js.JobID)
	if err != nil {
		t.Fatal(err)
	}
	j, err := core.DecodeActionJob(raw)
	if err != nil {
		t.Fatal(err)
	}
	if j.Actor != (core.Actor{Protocol: "rest", ID: "admin"}) || j.Verb != "stamp" || j.Args[0] != "actor=rest:root" {
		t.Fatalf("job %+v", j)
	}
	st := e.call("GET", r.Header.Get("Location"), tokAdmin, "")
	if !strings.Contains(string(st.body), `"state":"queued"`) {
		t.Fatalf("status: %s", st.body)
	}
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("orders", thoonk.TypeFeed, nil)
	post := func(key, body string) resp {
		return e.call("POST", "/v1/feeds/orders/items", tokAdmin, body, "Idempotency-Key", key)
	}
	before := e.jobCount()
	r1 := post("k-1", "order 1")
	r1.want(t, 202)
	r2 := post("k-1", "order 1")
	if r2.StatusCode != 202 && r2.StatusCode != 201 || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v %s", r2.StatusCode, r2.Header, r2.body)
	}
	var j1, j2 core.JobStatus
	_ = json.Unmarshal(r1.body, &j1)
	_ = json.Unmarshal(r2.body, &j2)
	if j1.JobID == "" || j1.JobID != j2.JobID {
		t.Fatalf("jobs %q and %q", j1.JobID, j2.JobID)
	}
	post("k-1", "order 2").wantProblem(t, 422, "invalid-item")
	post(strings.Repeat("k", 300), "x").wantProblem(t, 400, "bad-request")
	// another token's same key is another request
	e.call("POST", "/v1/feeds/public:none/items", tokReader, "x", "Idempotency-Key", "k-1").wantProblem(t, 403, "forbidden")

	// concurrent retries: one job
	var wg sync.WaitGroup
	ids := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			r := e.do(e.req("POST", "/v1/feeds/orders/items", tokAdmin, "burst", "Idempotency-Key", `"k-burst"`))
			switch r.StatusCode {
			case 202, 201:
				var js core.JobStatus
				_ = json.Unmarshal(r.body, &js)
				ids <- js.JobID
			case 409:
			default:
				t.Errorf("concurrent: %d %s", r.StatusCode, r.body)
			}
		})
	}
	wg.Wait()
	close(ids)
	distinct := map[string]bool{}
	for id := range ids {
		distinct[id] = true
	}
	if len(distinct) != 1 {
		t.Fatalf("concurrent retries made %d jobs: %v", len(distinct), distinct)
	}
	if n := e.jobCount() - before; n != 2 {
		t.Fatalf("%d jobs stored, want 2", n)
	}

	// a client that leaves while it waits for the result (the "stamp"
	// queue has no worker) finds its job when it retries
	e.create("routed", thoonk.TypeFeed, nil)
	stamp := func(ctx context.Context) *http.Request {
		return e.req("POST", "/v1/feeds/routed/actions/stamp", tokAdmin, `{"args":["once"]}`,
			"Idempotency-Key", "k-left", "Prefer", "wait=30").WithContext(ctx)
	}
	ctx, leave := context.WithCancel(context.Background())
	left := make(chan struct{})
	go func() {
		defer close(left)
		if res, err := http.DefaultClient.Do(stamp(ctx)); err == nil {
			res.Body.Close()
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); e.appJobs() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job was never stored")
		}
	}
	leave()
	<-left
	var replay resp
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// 409 (with Retry-After) only while the first request stores its job
		if replay = e.do(stamp(context.Background())); replay.StatusCode != 409 || time.Now().After(deadline) {
			break
		}
	}
	replay.want(t, 202)
	var js core.JobStatus
	_ = json.Unmarshal(replay.body, &js)
	if replay.Header.Get("Idempotent-Replayed") != "true" || js.State != thoonk.JobQueued || e.appJobs() != 1 {
		t.Fatalf("retry after leaving: %v %s, %d jobs", replay.Header, replay.body, e.appJobs())
	}
	// a replay shows the job's current state
	if _, err := e.store.Jobs("feedbridge.app").Get(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	replay = e.do(stamp(context.Background()))
	_ = json.Unmarshal(replay.body, &js)
	if replay.StatusCode != 202 || js.State != thoonk.JobClaimed {
		t.Fatalf("replay of a claimed job: %d %s", replay.StatusCode, replay.body)
	}
}

func TestLimitsAndCORS(t *testing.T) {
	e := newEnv(t, `
rest:
  enabled: true
  anonymous: false
  tokens: [{name: admin, token: `+tokAdmin+`}]
  rate_limit: {per_token: {rate: 0.5, burst: 3}, per_ip: {rate: 0.5, burst: 2}}
  cors: {allowed_origins: ["https://app.example"]}
`)
	e.call("GET", "/v1/feeds", "", "").wantProblem(t, 401, "unauthorized")
	e.call("GET", "/v1/feeds", "", "").wantProblem(t, 401, "unauthorized")
	r := e.call("GET", "/v1/feeds", "", "")
	r.wantProblem(t, 429, "rate-limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// the token has its own budget
	for range 3 {
		e.call("GET", "/v1/feeds", tokAdmin, "").want(t, 200)
	}
	e.call("GET", "/v1/feeds", tokAdmin, "").wantProblem(t, 429, "rate-limited")

	pre := e.req("OPTIONS", "/v1/feeds/x/items", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	res, err := http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	r = e.call("GET", "/v1/feeds", tokAdmin, "", "Origin", "https://evil.example")
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("CORS allowed an unlisted origin")
	}
}

func TestRedisDown(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:f", thoonk.TypeFeed, nil)
	_ = e.rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err()
	_ = e.rdb.Do(context.Background(), "SHUTDOWN", "NOSAVE").Err()
	for _, r := range []resp{
		e.call("GET", "/v1/feeds", tokReader, ""),
		e.call("GET", "/v1/feeds/public:f/items", tokReader, ""),
		e.call("POST", "/v1/feeds/public:f/items", tokAdmin, "x"),
	} {
		r.wantProblem(t, 503, "unavailable")
		if strings.Contains(strings.ToLower(string(r.body)), "redis") || strings.Contains(string(r.body), "dial") {
			t.Errorf("problem leaks the Redis error: %s", r.body)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.States()["rest"].State != core.StateReconnecting {
		if time.Now().After(deadline) {
			t.Fatal("state never went to reconnecting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOpenAPICatchesDrift: the checker every test uses rejects answers the
// document does not describe, so it can fail.
func TestOpenAPICatchesDrift(t *testing.T) {
	check, err := resttest.New(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/feeds/a%2Fb", nil)
	h := http.Header{"Content-Type": {"application/json"}}
	good := `{"name":"a/b","type":"feed","config":{},"count":0}`
	if err := check.Check(r, 200, h, []byte(good)); err != nil {
		t.Fatalf("valid answer rejected: %v", err)
	}
	for _, c := range []struct {
		status int
		body   string
	}{
		{200, `{"name":"a/b"}`},
		{200, `{"name":"a/b","type":"feed","config":{},"count":0,"extra":1}`},
		{418, good},
		{404, `{"title":"no type"}`},
	} {
		if check.Check(r, c.status, h, []byte(c.body)) == nil {
			t.Errorf("%d %s accepted", c.status, c.body)
		}
	}
	if check.Check(httptest.NewRequest("GET", "/v1/undocumented", nil), 200, h, []byte(good)) == nil {
		t.Error("an undocumented path was accepted")
	}
	if check.Event(resttest.Event{Type: "publish", Data: `{"id":"x"}`}) == nil {
		t.Error("event data without feed accepted")
	}
	head := httptest.NewRequest("HEAD", "/v1/feeds/a%2Fb", nil)
	if err := check.Check(head, 200, h, nil); err != nil {
		t.Fatalf("valid HEAD answer rejected: %v", err)
	}
	if check.Check(head, 200, h, []byte(good)) == nil {
		t.Error("a HEAD answer with a body was accepted")
	}
	if check.Check(head, 418, h, nil) == nil {
		t.Error("a HEAD answer with an undocumented status was accepted")
	}
}

// TestHeadOnEveryGetRoute: HEAD answers every GET route with GET's status
// and headers, and no body; on an event stream it opens no stream.
func TestHeadOnEveryGetRoute(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("public:h", thoonk.TypeFeed, nil)
	e.create("secret:h", thoonk.TypeFeed, nil)
	e.create("routed", thoonk.TypeFeed, nil)
	if _, err := e.store.Feed("public:h").Publish(context.Background(), []byte(`{"n":1}`), "1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // distinct publish times keep the order
	if _, err := e.store.Feed("public:h").Publish(context.Background(), []byte("two"), "2"); err != nil {
		t.Fatal(err)
	}
	job := e.call("POST", "/v1/feeds/routed/actions/stamp", tokAdmin, `{}`) // no worker: it stays queued
	job.want(t, 202)
	etag := e.call("GET", "/v1/feeds/public:h/items/1", "", "").Header.Get("ETag")
	for _, c := range []struct {
		path, token string
		hdr         []string
		status      int
	}{
		{"/v1/openapi.json", "", nil, 200},
		{"/v1/problems/not-found", "", nil, 200},
		{"/v1/feeds", tokReader, nil, 200},
		{"/v1/feeds?limit=0", "", nil, 400},
		{"/v1/feeds", "wrong-token-0123456789", nil, 401},
		{"/v1/feeds/public:h", "", nil, 200},
		{"/v1/feeds/secret:h", "", nil, 404},
		{"/v1/feeds/public:h/items?limit=1", "", nil, 200},
		{"/v1/feeds/public:h/items/1", "", nil, 200},
		{"/v1/feeds/public:h/items/1", "", []string{"If-None-Match", etag}, 304},
		{job.Header.Get("Location"), tokAdmin, nil, 200},
	} {
		get := e.call("GET", c.path, c.token, "", c.hdr...)
		head := e.call("HEAD", c.path, c.token, "", c.hdr...)
		if get.StatusCode != c.status || head.StatusCode != c.status || len(head.body) != 0 {
			t.Errorf("%s: GET %d, HEAD %d with %d bytes; want %d and no body", c.path, get.StatusCode, head.StatusCode, len(head.body), c.status)
			continue
		}
		if g, h := withoutDate(get.Header), withoutDate(head.Header); !maps.EqualFunc(g, h, slices.Equal) {
			t.Errorf("%s: HEAD headers differ from GET's:\nGET  %v\nHEAD %v", c.path, g, h)
		}
	}
	for _, path := range []string{"/v1/feeds/public:h/events", "/v1/events?feeds=public:*"} {
		res, _ := e.stream(path, "")
		head := e.call("HEAD", path, "", "")
		head.want(t, 200)
		for _, k := range []string{"Content-Type", "Cache-Control", "X-Accel-Buffering", "X-Content-Type-Options"} {
			if head.Header.Get(k) != res.Header.Get(k) {
				t.Errorf("%s: HEAD %s %q, the stream's %q", path, k, head.Header.Get(k), res.Header.Get(k))
			}
		}
	}
}

func withoutDate(h http.Header) http.Header {
	h = h.Clone()
	h.Del("Date")
	return h
}

// TestJobStatusOnlyForItsSubmitter: a job's status is shown to the actor
// who submitted it; another actor's job looks exactly like an unknown one.
func TestJobStatusOnlyForItsSubmitter(t *testing.T) {
	e := newEnv(t, baseConfig)
	e.create("routed", thoonk.TypeFeed, nil)
	r := e.call("POST", "/v1/feeds/routed/actions/stamp", tokAdmin, `{}`) // no worker: it stays queued
	r.want(t, 202)
	loc := r.Header.Get("Location")
	if st := e.call("GET", loc, tokAdmin, ""); st.StatusCode != 200 || !strings.Contains(string(st.body), `"state":"queued"`) {
		t.Fatalf("the submitter's view: %d %s", st.StatusCode, st.body)
	}
	var bodies []string
	for _, c := range []struct{ path, token string }{
		{loc, tokReader}, {loc, ""}, {"/v1/jobs/feedbridge.app/nope", tokAdmin}, {"/v1/jobs/other/1", tokAdmin},
	} {
		r := e.call("GET", c.path, c.token, "")
		r.wantProblem(t, 404, "not-found")
		var p Problem
		_ = json.Unmarshal(r.body, &p)
		p.Instance = ""
		b, _ := json.Marshal(p)
		bodies = append(bodies, string(b))
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("404s differ, telling jobs apart: %s vs %s", b, bodies[0])
		}
	}
}
