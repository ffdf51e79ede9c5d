package atom

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"
	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/bridges/atom/atomtest"
	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// harness runs the adapter against a real redis-server: a store, the
// event listener, the adapter's Run loop and its HTTP routes on a test
// server whose URL is the public URL.
type harness struct {
	t      testing.TB
	rdb    redis.UniversalClient
	store  *thoonk.Store
	bridge *Bridge
	srv    *httptest.Server
	mux    *http.ServeMux
	logs   *testenv.LogBuffer
}

// testACL lets the anonymous reader read everything but "secret:*", and
// the token reader atom:alice (websub:alice as a WebSub subscriber)
// everything.
var testACL = core.MustACL(
	core.ACLRule{Actors: []string{"*:anonymous"}, Feeds: []string{"[^s]*", "s[^e]*"}, Allow: []string{core.OpRead}},
	core.ACLRule{Actors: []string{"atom:alice", "websub:alice"}, Feeds: []string{"*"}, Allow: []string{core.OpRead}},
)

// newHarness starts everything with the given atom section (YAML, without
// the "atom:" line; "enabled: true" is added, and the rate limit is off
// unless the section sets one). hooks are added to the Redis client (the
// bridge's and the tests') before anything runs on it.
func newHarness(tb testing.TB, section string, hooks ...redis.Hook) *harness {
	tb.Helper()
	r := testenv.StartRedis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	tb.Cleanup(func() { rdb.Close() })
	for _, hook := range hooks {
		rdb.AddHook(hook)
	}
	return newHarnessOn(tb, rdb, section)
}

// newHarnessOn is newHarness on a client of the test's own Redis
// deployment (a Cluster, say).
func newHarnessOn(tb testing.TB, rdb redis.UniversalClient, section string) *harness {
	tb.Helper()
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 10000, MaxItemBytes: 8192}})
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.Contains(section, "rate_limit") {
		section += "\nrate_limit: {per_ip: {rate: 0}}"
	}
	b := newBridge(tb, section)
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	// A long ping interval keeps the listener from sending commands that
	// would blur the command counts some tests assert.
	l := thoonk.NewListener(store, thoonk.ListenerOptions{Logger: log, PingInterval: time.Hour})
	h := &harness{t: tb, rdb: rdb, store: store, bridge: b, mux: http.NewServeMux(), logs: logs}
	h.srv = httptest.NewUnstartedServer(h.mux)
	hub := &core.Hub{Store: store, Events: l, ACL: testACL, Metrics: core.NewMetrics(), Log: log, PublicURL: "http://" + h.srv.Listener.Addr().String()}
	if err := b.MountHTTP(hub, h.mux); err != nil {
		tb.Fatal(err)
	}
	h.srv.Start()
	tb.Cleanup(h.srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	wg.Go(func() { _ = b.Run(ctx, hub) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := l.WaitConnected(wctx); err != nil {
		tb.Fatal(err)
	}
	h.eventually("the adapter follows events", func() bool { return b.following.Load() })
	return h
}

// newBridge builds the adapter from a section, failing on config errors.
func newBridge(tb testing.TB, section string) *Bridge {
	tb.Helper()
	a, err := New(mustSection(tb, "enabled: true\n"+section))
	if err != nil {
		tb.Fatal(err)
	}
	return a.(*Bridge)
}

func mustSection(tb testing.TB, section string) *core.Section {
	tb.Helper()
	indented := "  " + strings.ReplaceAll(section, "\n", "\n  ")
	root, err := core.ParseYAML("bridge.yaml", []byte("atom:\n"+indented+"\n"))
	if err != nil {
		tb.Fatal(err)
	}
	return root.Sub("atom")
}

// eventually polls cond until it holds, failing after 10s.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fetch requests path (with optional header pairs) and returns the
// response with its body read. A feed document is checked the way outside
// readers see it (atomtest.Check: gofeed, and jing for Atom) and returned
// parsed; nil for any other answer.
func (h *harness) fetch(path string, header ...string) (*http.Response, []byte, *gofeed.Feed) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, body, atomtest.Check(h.t, resp, body)
}

// get is fetch without the parsed feed.
func (h *harness) get(path string, header ...string) (*http.Response, []byte) {
	h.t.Helper()
	resp, body, _ := h.fetch(path, header...)
	return resp, body
}

// okFeed fetches path and fails unless the answer is 200.
func (h *harness) okFeed(path string, header ...string) (*http.Response, []byte, *gofeed.Feed) {
	h.t.Helper()
	resp, body, f := h.fetch(path, header...)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
	}
	return resp, body, f
}

// ok is okFeed without the parsed feed.
func (h *harness) ok(path string, header ...string) (*http.Response, []byte) {
	h.t.Helper()
	resp, body, _ := h.okFeed(path, header...)
	return resp, body
}

// commands returns how many commands the Redis server has processed.
func (h *harness) commands() int {
	h.t.Helper()
	info, err := h.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	for l := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	h.t.Fatal("no total_commands_processed in INFO")
	return 0
}

func (h *harness) create(name string, typ thoonk.FeedType, config map[string]string) {
	h.t.Helper()
	if err := h.store.Create(context.Background(), name, typ, config); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) publish(feed, id, item string) {
	h.t.Helper()
	if _, err := h.store.Feed(feed).Publish(context.Background(), []byte(item), id); err != nil {
		h.t.Fatal(err)
	}
}
