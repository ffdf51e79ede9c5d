package integration

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/bridges/atom/atomtest"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// webSubConfig is a bridge serving Atom with the WebSub hub on, listening
// on listen and known to readers as public (one public URL for a fleet).
// Callbacks may reach loopback (the test subscriber listens there), and
// a delivery job whose process died is taken over after 3s.
func webSubConfig(redisURL, listen, public string) string {
	return fmt.Sprintf(`redis:
  url: %s
http:
  listen: %s
  public_url: http://%s
create_feeds:
  - {name: news, type: feed}
acl:
  - actors: ["*"]
    feeds: ["*"]
    allow: [read]
rest:
  enabled: false
atom:
  enabled: true
  websub:
    enabled: true
    callbacks: {allow: ["127.0.0.0/8"]}
    rate_limit: {per_ip: {rate: 0}}
    delivery: {timeout: 2s, job_timeout: 3s, retry: {min: 100ms, max: 1s}}
`, redisURL, listen, public)
}

// metricValue reads one sample (name{labels} as printed) of a bridge's
// /metrics; 0 when absent.
func metricValue(t *testing.T, addr, sample string) int {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics of %s: %d %s", addr, code, body)
	}
	for l := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), sample+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// TestWebSubFleet runs two bridge processes on one Redis: every change is
// delivered once (one process fans it out, the work is shared), the
// subscription made through one process is served by both, a delivery
// whose processes crashed is made after a restart, subscriptions survive
// restarts, and a change made while no process ran is delivered at the
// next start.
func TestWebSubFleet(t *testing.T) {
	rs := testenv.StartRedis(t)
	addrA, addrB := testenv.FreeAddr(t), testenv.FreeAddr(t)
	a := testenv.StartBridge(t, webSubConfig(rs.URL, addrA, addrA), addrA)
	b := testenv.StartBridge(t, webSubConfig(rs.URL, addrB, addrA), addrB)
	waitReady(t, addrA)
	waitReady(t, addrB)
	store := storeFor(t, rs.URL)
	ctx := context.Background()
	sub := atomtest.NewSubscriber(t)
	topic := "http://" + addrA + "/atom/news"
	const secret = "fleet-secret"

	// subscribed through B, for the topic A's URL names: one hub
	status, body := atomtest.HubRequest(t, "http://"+addrB+"/websub", atomtest.Subscription("subscribe", topic, sub.Callback("/cb"), "hub.secret", secret))
	if status != 202 {
		t.Fatalf("subscribe: %d %s", status, body)
	}
	sub.WaitVerification(t, "/cb", "subscribe")
	waitFor(t, "the subscription is stored", func() bool { return metricValue(t, addrA, "feedbridge_websub_subscriptions") == 1 })

	publish := func(id string) {
		t.Helper()
		if _, err := store.Feed("news").Publish(ctx, []byte(`{"title":"item `+id+`"}`), id); err != nil {
			t.Fatal(err)
		}
	}
	const changes = 12
	for i := range changes {
		id := fmt.Sprintf("n%02d", i)
		publish(id)
		sub.WaitDelivery(t, "/cb", "item "+id)
	}
	// a later change is delivered after any duplicate of the earlier ones
	publish("last")
	sub.WaitDelivery(t, "/cb", "item last")
	ds := sub.Deliveries("/cb")
	if len(ds) != changes+1 {
		t.Fatalf("%d deliveries for %d changes", len(ds), changes+1)
	}
	for i, d := range ds {
		if err := atomtest.VerifySignature(d.Header.Get("X-Hub-Signature"), secret, d.Body); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if i > 0 && bytes.Equal(d.Body, ds[i-1].Body) {
			t.Fatalf("delivery %d repeats the document before", i)
		}
	}
	sum := func(sample string) int { return metricValue(t, addrA, sample) + metricValue(t, addrB, sample) }
	waitFor(t, "both processes counted the deliveries", func() bool {
		return sum(`feedbridge_websub_deliveries_total{outcome="delivered"}`) == changes+1
	})
	if n := sum(`feedbridge_websub_fanouts_total{outcome="done"}`); n != changes+1 {
		t.Errorf("%d fan-outs for %d changes: the processes did not share them out once each", n, changes+1)
	}

	// both processes die while one of them delivers: the delivery is made
	// once a process runs again (the job's claim times out)
	release := sub.Hold("/cb")
	publish("crash")
	sub.WaitDeliveries(t, "/cb", changes+2)
	a.Kill()
	b.Kill()
	release()
	a.Start()
	waitFor(t, "the delivery of the crash is made again", func() bool {
		ds := sub.Deliveries("/cb")
		return len(ds) >= changes+3 && strings.Contains(string(ds[len(ds)-1].Body), "item crash")
	})

	// a graceful restart keeps the subscription too
	a.Restart()
	publish("restart")
	d := sub.WaitDelivery(t, "/cb", "item restart")
	if err := atomtest.VerifySignature(d.Header.Get("X-Hub-Signature"), secret, d.Body); err != nil {
		t.Fatal(err)
	}

	// a change made while no process runs is delivered when one starts
	a.Stop()
	publish("offline")
	a.Start()
	sub.WaitDelivery(t, "/cb", "item offline")
	if !strings.Contains(b.Log(), "websub: subscribed") {
		t.Error("the process that took the subscription did not log it")
	}
}
