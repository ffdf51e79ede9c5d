package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

const restAdminToken = "integration-admin-token-0123456789"

// restBridge is the built bridge binary serving REST over a real Redis.
type restBridge struct {
	t     *testing.T
	base  string
	proc  *testenv.Bridge
	store *thoonk.Store
	rdb   *redis.Client
	check *resttest.Checker
}

func startRESTBridge(t *testing.T) *restBridge {
	t.Helper()
	r := testenv.StartRedis(t)
	addr := testenv.FreeAddr(t)
	t.Setenv("REST_IT_TOKEN", restAdminToken) // the config reads it with ${...}
	config := fmt.Sprintf(`
log: {level: debug}
redis: {url: %s}
http: {listen: %s, write_timeout: 2s}
shutdown_timeout: 5s
acl:
  - {actors: ["rest:admin"], feeds: ["*"], allow: ["*"]}
  - {actors: ["*"], feeds: ["public:*"], allow: [read]}
rest:
  enabled: true
  anonymous: true
  tokens:
    - {name: admin, token: "${REST_IT_TOKEN}"}
  max_body_bytes: 1024
  events: {heartbeat: 1s}
`, r.URL, addr)
	proc := testenv.StartBridge(t, config, addr)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := restClient(t, proc, rdb)
	b.store = store
	return b
}

// waitReady polls /readyz until the bridge (and so the REST adapter) is up.
func (b *restBridge) waitReady() {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(b.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("bridge never ready:\n%s", b.proc.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type restAnswer struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request and validates the answer against the OpenAPI document.
func (b *restBridge) do(method, path, token, body string, hdr ...string) restAnswer {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	a := restAnswer{res.StatusCode, res.Header, resttest.Body(res)}
	if err := b.check.Check(req, a.status, a.header, a.body); err != nil {
		b.t.Error(err)
	}
	return a
}

func (a restAnswer) want(t *testing.T, status int, kind string) {
	t.Helper()
	if a.status != status || kind != "" && !strings.Contains(string(a.body), `"type":"/v1/problems/`+kind+`"`) {
		t.Fatalf("want %d %s, got %d: %s", status, kind, a.status, a.body)
	}
}

// stream opens an event stream; Last-Event-ID is sent when lastID is set.
func (b *restBridge) stream(path, lastID string) (*http.Response, func() resttest.Event) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { res.Body.Close() })
	if err := b.check.Check(req, res.StatusCode, res.Header, nil); err != nil || res.StatusCode != 200 {
		b.t.Fatalf("stream %d: %v", res.StatusCode, err)
	}
	events := make(chan resttest.Event, 64)
	go func() {
		defer close(events)
		rd := resttest.NewReader(res.Body)
		for {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	return res, func() resttest.Event {
		b.t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				b.t.Fatal("stream ended")
			}
			if ev.Type != "" {
				if err := b.check.Event(ev); err != nil {
					b.t.Error(err)
				}
			}
			return ev
		case <-time.After(15 * time.Second):
			b.t.Fatal("no event within 15s")
		}
		return resttest.Event{}
	}
}

func (b *restBridge) jobs() int64 {
	n, _ := b.rdb.Get(context.Background(), "feed.publishes:feedbridge.actions").Int64()
	return n
}

// TestRESTEndToEnd drives the built binary: a publish makes the round trip
// through a job and the built-in worker to GET and to a live stream; a
// dropped stream resumes with exactly the missed events; bad requests get
// problems and create nothing.
func TestRESTEndToEnd(t *testing.T) {
	b := startRESTBridge(t)
	ctx := context.Background()
	feed := "public:team:353:member:12/tasks"
	seg := "public:team:353:member:12%2Ftasks"
	if err := b.store.Create(ctx, feed, thoonk.TypeFeed, map[string]string{"title": "Tasks"}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Create(ctx, "private", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	resp, next := b.stream("/v1/feeds/"+seg+"/events", "")
	if hello := next(); hello.ID == "" {
		t.Fatalf("no resume point: %+v", hello)
	}

	// publish through a real job round trip
	a := b.do("POST", "/v1/feeds/"+seg+"/items?id=t1", restAdminToken, `{"title":"ship it"}`, "Content-Type", "application/json")
	a.want(t, 202, "")
	// the result reaches the status record just after the job finishes
	if res := jobResult(t, b, a.header.Get("Location")); res.Code != 201 || res.ID != "t1" {
		t.Fatalf("result %+v", res)
	}
	ev := next()
	if ev.Type != "publish" || !strings.Contains(ev.Data, `"item":{"title":"ship it"}`) {
		t.Fatalf("stream got %+v", ev)
	}
	got := b.do("GET", "/v1/feeds/"+seg+"/items/t1", "", "")
	got.want(t, 200, "")
	if !strings.Contains(string(got.body), `"ship it"`) {
		t.Fatalf("item %s", got.body)
	}
	etag := got.header.Get("ETag")

	// the client drops; what happens meanwhile is replayed on reconnect
	resp.Body.Close()
	b.do("PUT", "/v1/feeds/"+seg+"/items/t1", restAdminToken, `{"title":"shipped"}`, "If-Match", etag, "Prefer", "wait=10").want(t, 200, "")
	b.do("POST", "/v1/feeds/"+seg+"/items?id=t2", restAdminToken, "second", "Prefer", "wait=10").want(t, 201, "")
	b.do("DELETE", "/v1/feeds/"+seg+"/items/t2", restAdminToken, "", "Prefer", "wait=10").want(t, 200, "")
	_, next = b.stream("/v1/feeds/"+seg+"/events", ev.ID)
	for _, want := range []string{"edit:shipped", "publish:second", "retract:t2"} {
		typ, data, _ := strings.Cut(want, ":")
		if ev := next(); ev.Type != typ || !strings.Contains(ev.Data, data) {
			t.Fatalf("resume: want %s, got %+v", want, ev)
		}
	}

	// a stale If-Match: 412 and no job
	before := b.jobs()
	b.do("PUT", "/v1/feeds/"+seg+"/items/t1", restAdminToken, "x", "If-Match", etag).want(t, 412, "precondition-failed")
	// bad token 401; anonymous may read public feeds (403 to write) but not others (404)
	b.do("POST", "/v1/feeds/"+seg+"/items", "wrong-token-wrong-token", "x").want(t, 401, "unauthorized")
	b.do("POST", "/v1/feeds/"+seg+"/items", "", "x").want(t, 403, "forbidden")
	b.do("GET", "/v1/feeds/private", "", "").want(t, 404, "not-found")
	b.do("POST", "/v1/feeds/private/items", "", "x").want(t, 404, "not-found")
	// oversize and malformed bodies
	b.do("POST", "/v1/feeds/"+seg+"/items", restAdminToken, strings.Repeat("x", 2000)).want(t, 413, "too-large")
	b.do("POST", "/v1/feeds/"+seg+"/items", restAdminToken, `{"title":`, "Content-Type", "application/json").want(t, 400, "bad-request")
	b.do("POST", "/v1/feeds/"+seg+"/items/t1/move", restAdminToken, `not json`).want(t, 400, "bad-request")
	if n := b.jobs(); n != before {
		t.Fatalf("rejected requests stored %d jobs", n-before)
	}
	list := b.do("GET", "/v1/feeds/"+seg+"/items", "", "")
	list.want(t, 200, "")
	var il struct{ Items []struct{ ID string } }
	_ = json.Unmarshal(list.body, &il)
	if len(il.Items) != 1 || il.Items[0].ID != "t1" {
		t.Fatalf("items after rejected requests: %s", list.body)
	}
}

// TestRESTRestartAndShutdown: a stream resumed across a bridge restart
// continues exactly where it stopped (the journal outlives the process),
// including a change made while no bridge ran, and SIGTERM with open
// streams exits cleanly and promptly.
func TestRESTRestartAndShutdown(t *testing.T) {
	b := startRESTBridge(t)
	ctx := context.Background()
	if err := b.store.Create(ctx, "public:r", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	_, next := b.stream("/v1/feeds/public:r/events", "")
	next()
	if _, err := b.store.Feed("public:r").Publish(ctx, []byte("before"), "p1"); err != nil {
		t.Fatal(err)
	}
	seen := next()
	if seen.Type != "publish" || !strings.Contains(seen.Data, "before") {
		t.Fatalf("before the restart: %+v", seen)
	}
	b.proc.Kill()
	// a foreign writer while no bridge runs: the restarted bridge's
	// journaler records it, and the resumed stream gets it
	if _, err := b.store.Feed("public:r").Publish(ctx, []byte("while-down"), "p2"); err != nil {
		t.Fatal(err)
	}
	b.proc.Start()
	b.waitReady()
	_, next = b.stream("/v1/feeds/public:r/events", seen.ID)
	if ev := next(); ev.Type != "publish" || !strings.Contains(ev.Data, "while-down") {
		t.Fatalf("after restart: %+v", ev)
	}
	// streams outlive http.write_timeout (2s)
	time.Sleep(2500 * time.Millisecond)
	if _, err := b.store.Feed("public:r").Publish(ctx, []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Type != "publish" {
		t.Fatalf("after the write timeout: %+v", ev)
	}
	start := time.Now()
	if err := b.proc.Terminate(5 * time.Second); err != nil {
		t.Fatalf("exit: %v after %v\n%s", err, time.Since(start), b.proc.LogTail(20))
	}
}
