package rest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/rest/resttest"
	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// Tokens used by the tests.
const (
	tokAdmin  = "admin-token-0123456789"
	tokReader = "reader-token-0123456789"
)

// baseConfig is the rest section most tests use.
const baseConfig = `
rest:
  enabled: true
  anonymous: true
  tokens:
    - {name: admin, token: ` + tokAdmin + `}
    - {name: reader, token: ` + tokReader + `}
  rate_limit: {per_token: {rate: 0}, per_ip: {rate: 0}}
  max_body_bytes: 4096
  events: {heartbeat: 1s}
`

// testACL: admin does everything; reader reads all but "secret:*";
// anonymous reads "public:*".
var testACL = []core.ACLRule{
	{Actors: []string{"rest:admin"}, Feeds: []string{"*"}, Allow: []string{"*"}},
	{Actors: []string{"rest:reader"}, Feeds: []string{"*"}, Allow: []string{"read"}},
	{Actors: []string{"rest:anonymous"}, Feeds: []string{"public:*"}, Allow: []string{"read"}},
}

// env is the adapter mounted on an httptest server, over a real
// redis-server, with the core listener and the built-in worker running.
type env struct {
	t      testing.TB
	srv    *httptest.Server
	hub    *core.Hub
	store  *thoonk.Store
	rdb    *redis.Client
	bridge *Bridge
	check  *resttest.Checker
	cancel context.CancelFunc
}

func newEnv(t testing.TB, config string) *env {
	t.Helper()
	r := testenv.StartRedis(t)
	return newEnvOn(t, r, config)
}

// newEnvOn starts the env on a running Redis; hooks are added to the
// client the bridge uses before anything runs on it.
func newEnvOn(t testing.TB, r *testenv.Redis, config string, hooks ...redis.Hook) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000, MaxItemBytes: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	// a Redis kill is seen at once (the connection closes); the ping only
	// finds a silent one, and a short interval would take a loaded
	// machine's pause for a dead connection (a resync resets the streams)
	listener := thoonk.NewListener(store, thoonk.ListenerOptions{Logger: log, PingInterval: time.Second,
		Backoff: thoonk.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	acl := core.MustACL(testACL...)
	feeds := &core.FeedFilter{Include: []string{"*"}, Exclude: []string{"feedbridge.*"}}
	if err := feeds.Compile(&core.Section{File: "test"}, "feeds"); err != nil {
		t.Fatal(err)
	}
	routes := []core.ActionRoute{{Verbs: []string{"stamp"}, Queue: "feedbridge.app"}}
	if err := core.CompileRoutes(routes, &core.Section{File: "test"}, "routes"); err != nil {
		t.Fatal(err)
	}
	metrics := core.NewMetrics()
	hub := &core.Hub{Store: store, Events: listener, ACL: acl, Feeds: feeds, Metrics: metrics, Log: log,
		Actions: core.NewActions(store, listener, acl, core.ActionsOptions{
			Queue: "feedbridge.actions", Routes: routes, MaxItemBytes: 2048, ResultTTL: time.Hour}, metrics)}
	for _, q := range hub.Actions.Queues() {
		if err := store.Create(ctx, q, thoonk.TypeJob, nil); err != nil && !errors.Is(err, thoonk.ErrFeedExists) {
			t.Fatal(err)
		}
	}
	sec, err := core.ParseYAML("test.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(sec.Sub("rest"))
	if err != nil {
		t.Fatal(err)
	}
	b := a.(*Bridge)
	mux := http.NewServeMux()
	if err := b.MountHTTP(hub, mux); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = listener.Run(ctx) })
	wg.Go(func() {
		_ = core.NewWorker(store, core.WorkerOptions{Queues: []string{"feedbridge.actions"}, Concurrency: 2,
			ACL: acl, Log: log, Metrics: metrics}).Run(ctx)
	})
	wg.Go(func() { _ = b.Run(ctx, hub) })
	if err := listener.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	check, err := resttest.New(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: httptest.NewServer(mux), hub: hub, store: store, rdb: rdb, bridge: b, check: check, cancel: cancel}
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.srv.Close()
		cancel()
		wg.Wait()
	})
	e.waitUp()
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitUp waits until the adapter reports itself up (its subscription runs).
func (e *env) waitUp() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.States()["rest"].State != core.StateUp {
		if time.Now().After(deadline) {
			e.t.Fatal("the adapter never came up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resp is a response read whole and checked against the OpenAPI document.
type resp struct {
	*http.Response
	body []byte
}

// req builds a request; token "" sends none.
func (e *env) req(method, path, token string, body string, hdr ...string) *http.Request {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

// do sends a request, reads the answer and validates it against the document.
func (e *env) do(r *http.Request) resp {
	e.t.Helper()
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	body := resttest.Body(res)
	if err := e.check.Check(r, res.StatusCode, res.Header, body); err != nil {
		e.t.Error(err)
	}
	return resp{res, body}
}

// call is do(req(...)).
func (e *env) call(method, path, token, body string, hdr ...string) resp {
	e.t.Helper()
	return e.do(e.req(method, path, token, body, hdr...))
}

// wantProblem asserts a problem answer of a kind.
func (r resp) wantProblem(t testing.TB, status int, kind string) {
	t.Helper()
	if r.StatusCode != status || r.Header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(r.body), `"type":"/v1/problems/`+kind+`"`) {
		t.Fatalf("want %d %s problem, got %d %s: %s", status, kind, r.StatusCode, r.Header.Get("Content-Type"), r.body)
	}
}

func (r resp) want(t testing.TB, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("want %d, got %d: %s", status, r.StatusCode, r.body)
	}
}

// jobCount returns the number of jobs ever put on the action queue.
func (e *env) jobCount() int64 {
	e.t.Helper()
	n, err := e.rdb.Get(context.Background(), "feed.publishes:feedbridge.actions").Int64()
	if err != nil && err != redis.Nil {
		e.t.Fatal(err)
	}
	return n
}

// appJobs returns the number of jobs ever put on feedbridge.app, the
// queue of the "stamp" verb, which no worker serves in these tests.
func (e *env) appJobs() int64 {
	e.t.Helper()
	n, err := e.rdb.Get(context.Background(), "feed.publishes:feedbridge.app").Int64()
	if err != nil && err != redis.Nil {
		e.t.Fatal(err)
	}
	return n
}

// create makes a feed.
func (e *env) create(feed string, typ thoonk.FeedType, cfg map[string]string) {
	e.t.Helper()
	if err := e.store.Create(context.Background(), feed, typ, cfg); err != nil {
		e.t.Fatal(err)
	}
}

// stream opens an event stream and returns its reader; it is closed when
// the test ends.
func (e *env) stream(path, token string, hdr ...string) (*http.Response, *resttest.Reader) {
	e.t.Helper()
	r := e.req("GET", path, token, "", hdr...)
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	res, err := http.DefaultClient.Do(r.WithContext(ctx))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	if err := e.check.Check(r, res.StatusCode, res.Header, nil); err != nil {
		e.t.Error(err)
	}
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("stream %s: %d %s", path, res.StatusCode, resttest.Body(res))
	}
	return res, resttest.NewReader(res.Body)
}

// next reads the next frame within a time limit, validating its data.
func (e *env) next(rd *resttest.Reader) resttest.Event {
	e.t.Helper()
	type got struct {
		ev  resttest.Event
		err error
	}
	ch := make(chan got, 1)
	go func() { ev, err := rd.Next(); ch <- got{ev, err} }()
	select {
	case g := <-ch:
		if g.err != nil {
			e.t.Fatal(g.err)
		}
		if g.ev.Type != "" {
			if err := e.check.Event(g.ev); err != nil {
				e.t.Error(err)
			}
		}
		return g.ev
	case <-time.After(10 * time.Second):
		e.t.Fatal("no event within 10s")
	}
	return resttest.Event{}
}
