package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// runtimeConfig is a bridge config on a test Redis with only the core parts:
// the built-in worker, job maintenance and the shared HTTP listener.
func runtimeConfig(redisURL, httpAddr string) string {
	return fmt.Sprintf(`log:
  level: debug
redis:
  url: %s
http:
  listen: %s
jobs:
  maintenance_interval: 200ms
acl:
  - actors: ["*"]
    feeds: ["*"]
    allow: [read]
  - actors: ["core:tester"]
    feeds: ["news", "list"]
    allow: ["*"]
rest:
  enabled: false
atom:
  enabled: false
`, redisURL, httpAddr)
}

// client is the test's own core on the bridge's Redis: what another
// feedbridge process or an application would run.
type client struct {
	rdb     *redis.Client
	store   *thoonk.Store
	events  *thoonk.Listener
	actions *core.Actions
}

func newClient(t *testing.T, srv *testenv.Redis) *client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Instance: "test-client"})
	if err != nil {
		t.Fatal(err)
	}
	l := thoonktest.Listen(t, store, thoonk.ListenerOptions{
		Backoff: thoonk.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	acl := core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"*"}})
	return &client{rdb: rdb, store: store, events: l, actions: core.NewActions(store, l, acl, core.ActionsOptions{
		Queue: "feedbridge.actions", MaxItemBytes: 1 << 20, ResultTTL: time.Hour}, nil)}
}

func waitEvent(t *testing.T, sub *thoonk.Subscription, typ thoonk.EventType) thoonk.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no %v event: %v", typ, err)
		}
		if ev.Type == typ {
			return ev
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, "http://"+httpAddr+"/readyz")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge never ready: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An action submitted through core is applied by the running bridge's
// built-in worker, the change arrives as a feed event, the job's status
// keeps the result, and SIGTERM stops the bridge cleanly.
func TestRuntimeAppliesActionsEndToEnd(t *testing.T) {
	srv := testenv.StartRedis(t)
	httpAddr := testenv.FreeAddr(t)
	b := testenv.StartBridge(t, runtimeConfig(srv.URL, httpAddr), httpAddr)
	c := newClient(t, srv)
	ctx := context.Background()
	if err := c.store.Create(ctx, "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	waitReady(t, httpAddr)
	sub := c.events.SubscribeFeed("news", 0)
	defer sub.Close()

	tester := core.Actor{Protocol: "core", ID: "tester"}
	tk, res, err := c.actions.SubmitWait(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte(`{"title":"hello"}`), Actor: tester}, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res == nil || !res.OK || res.Code != 201 {
		t.Fatalf("result %+v", res)
	}
	ev := waitEvent(t, sub, thoonk.EventPublish)
	if ev.ID != res.ID || string(ev.Item) != `{"title":"hello"}` {
		t.Fatalf("event %q %q", ev.ID, ev.Item)
	}
	st, err := c.actions.Status(ctx, tk.Queue, tk.JobID)
	if err != nil || st.State != thoonk.JobFinished {
		t.Fatalf("status %+v %v", st, err)
	}

	// A job planted by a producer that skipped the ACL (another process,
	// another library) is refused by the bridge's worker: 403, feed unchanged.
	rogue := core.EncodeActionJob(core.Action{Verb: "retract", Feed: "news", ID: res.ID,
		Actor: core.Actor{Protocol: "irc", ID: "mallory!m@evil"}}, "rogue", time.Now())
	w := c.events.Expect("feedbridge.actions", "rogue-job")
	if _, err := c.store.Jobs("feedbridge.actions").Put(ctx, rogue, thoonk.PutOptions{ID: "rogue-job"}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	raw, err := w.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := core.ParseResult(raw); r.OK || r.Code != 403 {
		t.Fatalf("rogue job result %+v", r)
	}
	if _, err := c.store.Feed("news").Get(ctx, res.ID); err != nil {
		t.Fatalf("the rogue retract went through: %v", err)
	}
	// The bridge counts what its worker did (right after storing each
	// result, so the count may follow the result event by a moment).
	waitFor(t, "the metrics count both results", func() bool {
		code, body := httpGet(t, "http://"+httpAddr+"/metrics")
		return code == 200 &&
			strings.Contains(body, `feedbridge_job_results_total{code="201",queue="feedbridge.actions"} 1`) &&
			strings.Contains(body, `feedbridge_job_results_total{code="403",queue="feedbridge.actions"} 1`)
	})

	if err := b.Terminate(15 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, b.LogTail(20))
	}
	if !strings.Contains(b.Log(), "msg=stopped") {
		t.Fatalf("no clean stop in the log:\n%s", b.LogTail(20))
	}
}

// An action the ACL denies, sent to the running bridge through REST,
// never reaches a job feed.
func TestRuntimeDeniedActionCreatesNoJob(t *testing.T) {
	srv := testenv.StartRedis(t)
	httpAddr := testenv.FreeAddr(t)
	cfg := strings.Replace(runtimeConfig(srv.URL, httpAddr), "rest:\n  enabled: false\n",
		"rest:\n  enabled: true\n  tokens:\n    - {name: reader, token: reader-token-0123456789}\n", 1)
	testenv.StartBridge(t, cfg, httpAddr)
	c := newClient(t, srv)
	ctx := context.Background()
	if err := c.store.Create(ctx, "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	waitReady(t, httpAddr)
	req, _ := http.NewRequest("POST", "http://"+httpAddr+"/v1/feeds/news/items", strings.NewReader(`{"title":"x"}`))
	req.Header.Set("Authorization", "Bearer reader-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("denied publish answered %d", resp.StatusCode)
	}
	n, err := c.rdb.Get(ctx, "feed.publishes:feedbridge.actions").Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d jobs were put", n)
	}
}

// Redis goes away and comes back empty: the bridge does not crash, reports
// not ready meanwhile, re-creates its action queue and works again.
func TestRuntimeSurvivesRedisRestart(t *testing.T) {
	srv := testenv.StartRedis(t)
	httpAddr := testenv.FreeAddr(t)
	b := testenv.StartBridge(t, runtimeConfig(srv.URL, httpAddr), httpAddr)
	waitReady(t, httpAddr)

	srv.Stop()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := httpGet(t, "http://"+httpAddr+"/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready with Redis down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Start()
	waitReady(t, httpAddr)

	c := newClient(t, srv)
	ctx := context.Background()
	if err := c.store.Create(ctx, "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	// the queue comes back shortly after the bridge reconnects
	deadline = time.Now().Add(20 * time.Second)
	for {
		if typ, err := c.store.Type(ctx, "feedbridge.actions"); err == nil && typ == thoonk.TypeJob {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("action queue not re-created\n%s", b.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, res, err := c.actions.SubmitWait(ctx, core.Action{Verb: "publish", Feed: "news", Item: []byte("after"),
		Actor: core.Actor{Protocol: "core", ID: "tester"}}, 15*time.Second)
	if err != nil || res == nil || res.Code != 201 {
		t.Fatalf("after the restart: %+v %v\n%s", res, err, b.LogTail(30))
	}
}
