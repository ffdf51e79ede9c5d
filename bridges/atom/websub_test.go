package atom

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/bridges/atom/atomtest"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// hubSection is an atom section with the hub on, callbacks to loopback
// allowed (the test subscribers listen there) and no rate limits; more
// are lines of the websub section, replacing the defaults of their keys.
func hubSection(more ...string) string {
	lines := []string{`callbacks: {allow: ["127.0.0.0/8"]}`, "rate_limit: {per_ip: {rate: 0}}"}
	lines = slices.DeleteFunc(lines, func(l string) bool {
		key, _, _ := strings.Cut(l, ":")
		return slices.ContainsFunc(more, func(m string) bool { return strings.HasPrefix(m, key+":") })
	})
	return "rate_limit: {per_ip: {rate: 0}}\nwebsub:\n  enabled: true\n  " + strings.Join(append(lines, more...), "\n  ")
}

// newHubHarness is newHarness for hub tests.
func newHubHarness(tb testing.TB, section string) *harness {
	return hubHarness(newHarness(tb, section))
}

// barrierFeed is the feed of barrier (hash-tagged, for Redis Cluster too).
const barrierFeed = "{barrier}"

// hubHarness prepares a harness for hub tests: a feed for barrier, and
// the adapter's log shown when the test fails.
func hubHarness(h *harness) *harness {
	tb := h.t
	h.create(barrierFeed, thoonk.TypeFeed, nil)
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("adapter log:\n%s", h.logs.String())
		}
	})
	return h
}

// newsHub starts a hub harness with the plain feed "news" and a test
// subscriber whose paths are subscribed to the feed's topic in format.
func newsHub(t *testing.T, section, format string, paths ...string) (*harness, *atomtest.Subscriber, string) {
	t.Helper()
	h := newHubHarness(t, section)
	sub := atomtest.NewSubscriber(t)
	h.create("news", thoonk.TypeFeed, nil)
	topic := h.topic(format, "news")
	for _, p := range paths {
		h.subscribe(sub, topic, p)
	}
	return h, sub, topic
}

func (h *harness) hubURL() string { return h.srv.URL + hubPath }

func (h *harness) topic(format, feed string) string {
	return h.srv.URL + "/" + format + "/" + url.PathEscape(feed)
}

// subscribed reports whether the hub holds the subscription of topic and
// callback.
func (h *harness) subscribed(topic, callback string) bool {
	return h.rdb.Exists(context.Background(), prefixSub+subscriptionID(topic, callback)).Val() == 1
}

// barrier waits until the adapter handled every feed event published
// before: it records the times of an item published now, after them.
func (h *harness) barrier() {
	h.t.Helper()
	id := thoonk.NewID()
	h.publish(barrierFeed, id, "x")
	h.eventually("the events are handled", func() bool {
		return h.rdb.HExists(context.Background(), prefixTimes+barrierFeed, "u:"+id).Val()
	})
}

// subscribe subscribes path of sub to topic (more: extra form pairs) and
// waits until the hub holds the subscription; it returns the hub's
// verification request. The events of earlier changes (a feed's
// creation) are handled first, so they deliver nothing.
func (h *harness) subscribe(sub *atomtest.Subscriber, topic, path string, more ...string) atomtest.Request {
	h.t.Helper()
	h.barrier()
	p, _, _ := strings.Cut(path, "?")
	n := len(sub.Verifications(p))
	if status, body := atomtest.HubRequest(h.t, h.hubURL(), atomtest.Subscription("subscribe", topic, sub.Callback(path), more...)); status != http.StatusAccepted {
		h.t.Fatalf("subscribe %s to %s: %d %s", path, topic, status, body)
	}
	h.eventually("the verification of "+path, func() bool { return len(sub.Verifications(p)) > n })
	h.eventually(path+" is subscribed", func() bool { return h.subscribed(topic, sub.Callback(path)) })
	return sub.WaitVerification(h.t, p, "subscribe")
}

// idle waits until the hub has no job queued or running and no change
// left to fan out or deliver (retries may wait).
func (h *harness) idle() {
	h.t.Helper()
	ctx := context.Background()
	w := h.bridge.ws
	h.eventually("the hub is idle", func() bool {
		w.pendMu.Lock()
		pending := len(w.pend) > 0 || w.pendAll
		w.pendMu.Unlock()
		n, err := h.store.Jobs(webSubQueue).Counts(ctx)
		return !pending && err == nil && n.Available+n.InFlight == 0 && h.rdb.ZCard(ctx, keyDirty).Val() == 0
	})
}

// metric reads a sample of the bridge's /metrics, as Prometheus scrapes
// it: name with its labels as printed, such as
// feedbridge_websub_deliveries_total{outcome="delivered"}; 0 when absent.
func (h *harness) metric(sample string) int {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.bridge.ws.hub.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for l := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), sample+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("%s: %v", l, err)
			}
			return int(n)
		}
	}
	return 0
}

// deliveries is the count of deliveries with an outcome.
func (h *harness) deliveries(outcome string) int {
	return h.metric(`feedbridge_websub_deliveries_total{outcome="` + outcome + `"}`)
}

// dropped is the count of subscriptions ended for a reason.
func (h *harness) dropped(reason string) int {
	return h.metric(`feedbridge_websub_subscriptions_dropped_total{reason="` + reason + `"}`)
}

func TestWebSubAdvertisedInEveryFormat(t *testing.T) {
	h := newHubHarness(t, hubSection())
	h.create("news", thoonk.TypeFeed, nil)
	for i := range 25 {
		h.publish("news", string(rune('a'+i)), `{"title":"item"}`)
	}
	hub := h.hubURL()
	for _, format := range []string{formatAtom, formatRSS, formatJSON} {
		resp, body, f := h.okFeed("/" + format + "/news")
		self := h.topic(format, "news")
		if want := "<" + hub + `>; rel="hub", <` + self + `>; rel="self"`; resp.Header.Get("Link") != want {
			t.Errorf("%s Link header %q, want %q", format, resp.Header.Get("Link"), want)
		}
		switch format {
		case formatAtom:
			if !strings.Contains(string(body), `<link href="`+hub+`" rel="hub"></link>`) || f.FeedLink != self {
				t.Errorf("atom document lacks the hub or self link:\n%s", body)
			}
		case formatRSS:
			if !strings.Contains(string(body), `<atom:link rel="hub" href="`+hub+`"></atom:link>`) ||
				!strings.Contains(string(body), `<atom:link rel="self" type="application/rss+xml" href="`+self+`">`) {
				t.Errorf("rss document lacks the hub or self link:\n%s", body)
			}
		case formatJSON:
			var doc struct {
				FeedURL string `json:"feed_url"`
				Hubs    []struct{ Type, URL string }
			}
			if err := json.Unmarshal(body, &doc); err != nil || doc.FeedURL != self || len(doc.Hubs) != 1 || doc.Hubs[0].URL != hub || doc.Hubs[0].Type != "WebSub" {
				t.Errorf("json feed lacks hubs or feed_url (%v):\n%s", err, body)
			}
		}
		// later pages are not topics: no hub there
		next := strings.TrimPrefix(nextLink(t, body), h.srv.URL)
		resp, body = h.ok(next)
		if resp.Header.Get("Link") != "" || strings.Contains(string(body), hub) {
			t.Errorf("%s page 2 advertises the hub: %q\n%s", format, resp.Header.Get("Link"), body)
		}
	}
	// the hub's own page says how to use it; other methods are refused
	if resp, body := h.get(hubPath); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hub.callback") {
		t.Errorf("GET /websub: %s %s", resp.Status, body)
	}

	off := newHarness(t, "")
	off.create("news", thoonk.TypeFeed, nil)
	resp, body := off.ok("/atom/news")
	if resp.Header.Get("Link") != "" || strings.Contains(string(body), `rel="hub"`) {
		t.Errorf("with the hub off, a hub is advertised: %q\n%s", resp.Header.Get("Link"), body)
	}
	if resp, _ := off.get(hubPath); resp.StatusCode != http.StatusNotFound {
		t.Errorf("with the hub off, /websub answers %s", resp.Status)
	}
}

var afterLink = regexp.MustCompile(`"(http[^"]*[?]after=[^"]*)"`)

// nextLink returns the next page's URL of a document.
func nextLink(t *testing.T, body []byte) string {
	t.Helper()
	m := afterLink.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no next link in %s", body)
	}
	return string(m[1])
}

func TestWebSubSubscribeVerifyDeliverSigned(t *testing.T) {
	h := newHubHarness(t, hubSection())
	sub := atomtest.NewSubscriber(t)
	h.create("news", thoonk.TypeFeed, map[string]string{"title": "News"})
	h.publish("news", "old", `{"title":"Before subscribing"}`)
	topic := h.topic(formatAtom, "news")

	// the callback's own query is kept, the hub's parameters come after
	const secret = "a-subscriber-secret-of-32-bytes!"
	v := h.subscribe(sub, topic, "/cb", "hub.secret", secret, "hub.lease_seconds", "3600")
	if got := v.Query; got.Get("hub.topic") != topic || got.Get("hub.lease_seconds") != "3600" ||
		len(got.Get("hub.challenge")) < 20 || sub.Verifications("/cb")[0].Query.Get("hub.mode") != "subscribe" {
		t.Fatalf("verification query %v", got)
	}
	h.subscribe(sub, h.topic(formatJSON, "news"), "/plain?client=7&hub.mode=mine")
	if q := sub.Verifications("/plain")[0].Query; q.Get("client") != "7" || q["hub.mode"][0] != "mine" || q["hub.mode"][1] != "subscribe" {
		t.Fatalf("the callback's query was not kept first: %v", q)
	}
	if len(sub.Deliveries("/cb")) != 0 {
		t.Fatal("a subscription got a delivery before any change")
	}

	h.publish("news", "new", `{"title":"Hello WebSub","content":"pushed, not polled"}`)
	d := sub.WaitDelivery(t, "/cb", "Hello WebSub")
	if ct := d.Header.Get("Content-Type"); ct != mediaTypes[formatAtom] {
		t.Errorf("Content-Type %q", ct)
	}
	if want := "<" + h.hubURL() + `>; rel="hub", <` + topic + `>; rel="self"`; d.Header.Get("Link") != want {
		t.Errorf("delivery Link %q, want %q", d.Header.Get("Link"), want)
	}
	sig := d.Header.Get("X-Hub-Signature")
	if !strings.HasPrefix(sig, "sha256=") {
		t.Fatalf("X-Hub-Signature %q", sig)
	}
	if err := atomtest.VerifySignature(sig, secret, d.Body); err != nil {
		t.Fatal(err)
	}
	if atomtest.VerifySignature(sig, "another secret", d.Body) == nil {
		t.Error("the signature verifies with a wrong secret")
	}
	tampered := []byte(strings.Replace(string(d.Body), "Hello WebSub", "Hello Mallory", 1))
	if atomtest.VerifySignature(sig, secret, tampered) == nil {
		t.Error("the signature verifies a tampered body")
	}
	f := atomtest.Parse(t, d.Body) // validated as RFC 4287 too
	if f.Items[0].Title != "Hello WebSub" || len(f.Items) != 2 || f.FeedLink != topic {
		t.Errorf("delivered document: %+v", f)
	}
	// the delivered document is the one readers fetch
	if _, body := h.ok("/atom/news"); string(body) != string(d.Body) {
		t.Errorf("delivered document differs from the served one:\n%s\n---\n%s", d.Body, body)
	}

	// the JSON topic without a secret: its own format, unsigned
	j := sub.WaitDelivery(t, "/plain", "Hello WebSub")
	if j.Header.Get("X-Hub-Signature") != "" || j.Header.Get("Content-Type") != mediaTypes[formatJSON] || j.Query.Get("client") != "7" {
		t.Errorf("json delivery: %v %v", j.Header, j.Query)
	}
	if n := h.deliveries(outcomeDelivered); n != 2 {
		t.Errorf("%d deliveries counted, want 2", n)
	}
	if h.metric("feedbridge_websub_delivery_lag_seconds_count") != 2 || h.metric("feedbridge_websub_delivery_seconds_count") != 2 ||
		h.metric("feedbridge_websub_subscriptions") != 2 {
		t.Error("the latency histograms or the subscriptions gauge are off")
	}

	// a notice of every feed (a resync) renders the same documents: not
	// delivered again
	h.idle()
	h.bridge.ws.changed(nil, true)
	h.eventually("the resync's fan-out", func() bool { return h.metric(`feedbridge_websub_fanouts_total{outcome="done"}`) >= 2 })
	h.idle()
	if n := len(sub.Deliveries("/cb")); n != 1 || h.deliveries(outcomeUnchanged) != 2 {
		t.Errorf("after a resync: %d deliveries, %d unchanged", n, h.deliveries(outcomeUnchanged))
	}
}

// Every process of a fleet sees each feed event; the first to claim its
// dedup key fans it out, the others leave it. Here the second process
// sees the event after the first delivered it (it lags behind), which
// the coalescing of jobs alone would not catch.
func TestWebSubOneProcessTakesEachChange(t *testing.T) {
	h, sub, _ := newsHub(t, hubSection(), formatAtom, "/cb")
	h.publish("news", "1", `{"title":"Once"}`)
	sub.WaitDelivery(t, "/cb", "Once")
	h.idle()

	other := newBridge(t, hubSection()).ws // another process on the same Redis
	other.hub, other.jobs = h.bridge.ws.hub, h.bridge.ws.jobs
	other.addFeed("news")
	es, _, err := h.store.Journal("news").Read(context.Background(), thoonk.RevStart, 100)
	if err != nil || len(es) == 0 {
		t.Fatalf("journal: %v %v", es, err)
	}
	ev := es[len(es)-1].Event("news") // the same journal event the first process saw
	ev.At = time.Now()
	other.changed([]thoonk.Event{ev}, false)
	if err := other.notify(context.Background(), other.pend, false, true); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if n := h.metric(`feedbridge_websub_fanouts_total{outcome="done"}`); n != 1 {
		t.Errorf("the change was fanned out %d times", n)
	}
	if n := len(sub.Deliveries("/cb")); n != 1 {
		t.Errorf("%d deliveries of one change", n)
	}
}

// On Redis Cluster every script of the hub keeps to one slot: subscribe,
// a failed delivery retried, a signed delivery, unsubscribe.
func TestWebSubOnRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, 3)
	rdb, err := thoonk.NewRedisClient("redis://"+c.Addrs[0]+"?addr="+c.Addrs[1]+"&addr="+c.Addrs[2], thoonk.RedisCluster, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	h := hubHarness(newHarnessOn(t, rdb, hubSection("delivery: {retry: {min: 50ms, max: 100ms}}")))
	sub := atomtest.NewSubscriber(t)
	const feed = "{team}:news"
	h.create(feed, thoonk.TypeFeed, nil)
	topic := h.topic(formatAtom, feed)
	h.subscribe(sub, topic, "/cb", "hub.secret", "cluster-secret")
	sub.FailNext("/cb", 1)
	h.publish(feed, "1", `{"title":"Clustered"}`)
	ds := sub.WaitDeliveries(t, "/cb", 2)
	if err := atomtest.VerifySignature(ds[1].Header.Get("X-Hub-Signature"), "cluster-secret", ds[1].Body); err != nil || !strings.Contains(string(ds[1].Body), "Clustered") {
		t.Fatalf("the retried delivery: %v\n%s", err, ds[1].Body)
	}
	atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("unsubscribe", topic, sub.Callback("/cb")))
	h.eventually("the unsubscription", func() bool { return !h.subscribed(topic, sub.Callback("/cb")) })
	h.idle()
	if logs := h.logs.String(); strings.Contains(logs, "CROSSSLOT") || strings.Contains(logs, "level=WARN") {
		t.Errorf("warnings on Cluster:\n%s", logs)
	}
}

// A job that fails for another reason than its callback (here a render:
// a foreign value under the feed's times key) runs again after a pause,
// never in a loop, and succeeds once the cause is gone.
func TestWebSubFailedJobRunsAgainAfterAPause(t *testing.T) {
	h, sub, _ := newsHub(t, hubSection(), formatAtom, "/cb")
	ctx := context.Background()
	if err := h.rdb.Set(ctx, prefixTimes+"news", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	h.publish("news", "1", `{"title":"Despite it all"}`)
	failures := func() int { return strings.Count(h.logs.String(), "websub: job failed; it will run again") }
	h.eventually("the fan-out fails", func() bool { return failures() >= 1 })
	time.Sleep(time.Second)
	if n := failures(); n != 1 {
		t.Fatalf("the failed job ran %d times within a second", n)
	}
	if err := h.rdb.Del(ctx, prefixTimes+"news").Err(); err != nil {
		t.Fatal(err)
	}
	sub.WaitDelivery(t, "/cb", "Despite it all")
}

func TestWebSubRetriesWithGrowingDelays(t *testing.T) {
	h, sub, _ := newsHub(t, hubSection("delivery: {retry: {attempts: 5, min: 200ms, max: 5s}}"), formatAtom, "/flaky")
	sub.FailNext("/flaky", 3)
	h.publish("news", "1", `{"title":"Eventually"}`)
	ds := sub.WaitDeliveries(t, "/flaky", 4)
	// equal jitter: retry n waits between min*2^n/2 and min*2^n
	for i, least := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if gap := ds[i+1].At.Sub(ds[i].At); gap < least {
			t.Errorf("retry %d came %s after the failure, want at least %s", i+1, gap, least)
		}
	}
	for _, d := range ds {
		if !strings.Contains(string(d.Body), "Eventually") {
			t.Errorf("a retry carried another document:\n%s", d.Body)
		}
	}
	h.eventually("the success is counted", func() bool { return h.deliveries(outcomeDelivered) == 1 })
	if h.deliveries(outcomeFailed) != 3 {
		t.Errorf("%d failures counted, want 3", h.deliveries(outcomeFailed))
	}
	h.idle()
	if n := len(sub.Deliveries("/flaky")); n != 4 {
		t.Errorf("%d deliveries, want 4", n)
	}
}

func TestWebSubAbandonsAfterRetriesAndDeliversTheNextChange(t *testing.T) {
	h, sub, _ := newsHub(t, hubSection("delivery: {retry: {attempts: 2, min: 20ms, max: 40ms}}"), formatAtom, "/down")
	sub.FailNext("/down", 3)
	h.publish("news", "1", `{"title":"First"}`)
	h.eventually("the notification is abandoned", func() bool { return h.deliveries(outcomeAbandoned) == 1 })
	h.idle()
	if n := len(sub.Deliveries("/down")); n != 3 {
		t.Fatalf("%d attempts, want 1 + 2 retries", n)
	}
	// the subscription stays: the next change is delivered
	h.publish("news", "2", `{"title":"Second"}`)
	d := sub.WaitDelivery(t, "/down", "Second")
	if !strings.Contains(string(d.Body), "First") {
		t.Error("the next delivery lacks the earlier item")
	}
}

func TestWebSubUnsubscribeStopsDeliveries(t *testing.T) {
	h, sub, topic := newsHub(t, hubSection(), formatRSS, "/leaving", "/staying")

	// a request the callback does not confirm changes nothing
	sub.Refuse("/leaving", true)
	if status, _ := atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("unsubscribe", topic, sub.Callback("/leaving"))); status != http.StatusAccepted {
		t.Fatalf("unsubscribe: %d", status)
	}
	sub.WaitVerification(t, "/leaving", "unsubscribe")
	h.eventually("the failed verification is counted", func() bool {
		return h.metric(`feedbridge_websub_verifications_total{mode="unsubscribe",outcome="failed"}`) == 1
	})
	if !h.subscribed(topic, sub.Callback("/leaving")) {
		t.Fatal("an unconfirmed unsubscription removed the subscription")
	}
	sub.Refuse("/leaving", false)
	status, _ := atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("unsubscribe", topic, sub.Callback("/leaving"), "hub.lease_seconds", "junk"))
	if status != http.StatusAccepted {
		t.Fatalf("unsubscribe: %d", status)
	}
	h.eventually("the unsubscription", func() bool { return !h.subscribed(topic, sub.Callback("/leaving")) })
	if got := sub.Verifications("/leaving"); got[len(got)-1].Query.Get("hub.lease_seconds") != "" {
		t.Errorf("an unsubscription verification carries a lease: %v", got[len(got)-1].Query)
	}

	h.publish("news", "1", `{"title":"After"}`)
	sub.WaitDelivery(t, "/staying", "After")
	h.idle()
	if n := len(sub.Deliveries("/leaving")); n != 0 {
		t.Errorf("%d deliveries after unsubscribing", n)
	}
	if h.dropped(reasonUnsubscribed) != 1 {
		t.Error("the unsubscription is not counted")
	}
}

func TestWebSubVerificationFailuresChangeNothing(t *testing.T) {
	h, sub, topic := newsHub(t, hubSection(), formatAtom)

	// a callback that does not agree (404) is not subscribed
	sub.Refuse("/no", true)
	atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("subscribe", topic, sub.Callback("/no")))
	h.eventually("the refused verification", func() bool {
		return h.metric(`feedbridge_websub_verifications_total{mode="subscribe",outcome="failed"}`) == 1
	})
	if h.subscribed(topic, sub.Callback("/no")) {
		t.Fatal("a refused verification subscribed")
	}

	// a renewal with a new secret takes effect only once verified
	h.subscribe(sub, topic, "/renew", "hub.secret", "first-secret")
	sub.Refuse("/renew", true)
	atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("subscribe", topic, sub.Callback("/renew"), "hub.secret", "second-secret"))
	h.eventually("the refused renewal", func() bool {
		return h.metric(`feedbridge_websub_verifications_total{mode="subscribe",outcome="failed"}`) == 2
	})
	h.publish("news", "1", `{"title":"One"}`)
	d := sub.WaitDelivery(t, "/renew", "One")
	if err := atomtest.VerifySignature(d.Header.Get("X-Hub-Signature"), "first-secret", d.Body); err != nil {
		t.Fatalf("after a refused renewal: %v", err)
	}
	sub.Refuse("/renew", false)
	h.subscribe(sub, topic, "/renew", "hub.secret", "second-secret")
	h.eventually("the new secret is stored", func() bool {
		return h.rdb.HGet(context.Background(), prefixSub+subscriptionID(topic, sub.Callback("/renew")), "secret").Val() == "second-secret"
	})
	h.publish("news", "2", `{"title":"Two"}`)
	d = sub.WaitDelivery(t, "/renew", "Two")
	if err := atomtest.VerifySignature(d.Header.Get("X-Hub-Signature"), "second-secret", d.Body); err != nil {
		t.Fatalf("after a verified renewal: %v", err)
	}
	// a renewal without a secret ends the signing
	h.subscribe(sub, topic, "/renew")
	h.eventually("the secret is gone", func() bool {
		return !h.rdb.HExists(context.Background(), prefixSub+subscriptionID(topic, sub.Callback("/renew")), "secret").Val()
	})
	h.publish("news", "3", `{"title":"Three"}`)
	if d := sub.WaitDelivery(t, "/renew", "Three"); d.Header.Get("X-Hub-Signature") != "" {
		t.Error("signed after a renewal without a secret")
	}
}

func TestWebSubLeases(t *testing.T) {
	h, sub, topic := newsHub(t, hubSection("lease: {min: 1s, default: 1h, max: 2h}"), formatAtom)
	for _, c := range []struct{ asked, granted string }{{"", "3600"}, {"999999999999", "7200"}, {"60", "60"}} {
		v := h.subscribe(sub, topic, "/lease", "hub.lease_seconds", c.asked)
		if got := v.Query.Get("hub.lease_seconds"); got != c.granted {
			t.Errorf("lease %q: granted %s, want %s", c.asked, got, c.granted)
		}
	}
	h.subscribe(sub, topic, "/probe")
	h.subscribe(sub, topic, "/short", "hub.lease_seconds", "1")
	h.eventually("the lease ends", func() bool { return !h.subscribed(topic, sub.Callback("/short")) })
	if h.dropped(reasonExpired) != 1 {
		t.Error("the expiry is not counted")
	}
	h.publish("news", "1", `{"title":"Later"}`)
	sub.WaitDelivery(t, "/probe", "Later")
	h.idle()
	if n := len(sub.Deliveries("/short")); n != 0 {
		t.Errorf("%d deliveries after the lease ended", n)
	}
}

func TestWebSubRefusesBadRequests(t *testing.T) {
	h := newHubHarness(t, hubSection("max_subscriptions: 1", `callbacks: {max_bytes: 100, allow: ["127.0.0.0/8"]}`)+"\n"+tokens)
	sub := atomtest.NewSubscriber(t)
	h.create("news", thoonk.TypeFeed, nil)
	h.create("secret:plans", thoonk.TypeFeed, nil)
	h.create("jobs", thoonk.TypeJob, nil)
	topic, cb := h.topic(formatAtom, "news"), sub.Callback("/cb")
	form := func(more ...string) url.Values {
		f := atomtest.Subscription("subscribe", topic, cb)
		for i := 0; i+1 < len(more); i += 2 {
			f[more[i]] = []string{more[i+1]}
			if more[i+1] == "" {
				delete(f, more[i])
			}
		}
		return f
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		header []string
		status int
		msg    string
	}{
		{"no mode", form("hub.mode", ""), nil, 400, "hub.mode must be subscribe or unsubscribe"},
		{"bad mode", form("hub.mode", "publish"), nil, 400, "hub.mode"},
		{"mode twice", url.Values{"hub.mode": {"subscribe", "unsubscribe"}, "hub.topic": {topic}, "hub.callback": {cb}}, nil, 400, "more than once"},
		{"no topic", form("hub.topic", ""), nil, 400, "hub.topic is missing"},
		{"foreign topic", form("hub.topic", "https://example.org/atom/news"), nil, 400, "is not a feed of this hub"},
		{"foreign path", form("hub.topic", h.srv.URL+"/v1/feeds/news"), nil, 400, "is not a feed of this hub"},
		{"a later page", form("hub.topic", topic+"?after=x"), nil, 400, "first page"},
		{"unknown feed", form("hub.topic", h.topic(formatAtom, "nope")), nil, 404, "no such feed"},
		{"unreadable feed", form("hub.topic", h.topic(formatAtom, "secret:plans")), nil, 404, "no such feed"},
		{"a job feed", form("hub.topic", h.topic(formatAtom, "jobs")), nil, 404, "no such feed"},
		{"no callback", form("hub.callback", ""), nil, 400, "hub.callback is missing"},
		{"bad scheme", form("hub.callback", "ftp://127.0.0.1/cb"), nil, 400, "absolute http or https URL"},
		{"script", form("hub.callback", "javascript:alert(1)"), nil, 400, "absolute http or https URL"},
		{"relative", form("hub.callback", "/cb"), nil, 400, "absolute http or https URL"},
		{"too long", form("hub.callback", cb+"?"+strings.Repeat("x", 100)), nil, 400, "over this hub's limit of 100"},
		{"fragment", form("hub.callback", cb+"#frag"), nil, 400, "fragment"},
		{"private", form("hub.callback", "http://10.1.2.3/cb"), nil, 400, "10.1.2.3, a loopback, private"},
		{"link-local", form("hub.callback", "http://169.254.169.254/latest/meta-data"), nil, 400, "private, link-local"},
		{"ipv6 loopback", form("hub.callback", "http://[::1]:80/cb"), nil, 400, "::1"},
		{"mapped", form("hub.callback", "http://[::ffff:192.168.1.1]/cb"), nil, 400, "192.168.1.1"},
		{"unresolvable", form("hub.callback", "http://no-such-host.invalid/cb"), nil, 400, "cannot be resolved"},
		{"long secret", form("hub.secret", strings.Repeat("s", 200)), nil, 400, "less than 200 bytes"},
		{"bad lease", form("hub.lease_seconds", "soon"), nil, 400, "positive decimal integer"},
		{"zero lease", form("hub.lease_seconds", "0"), nil, 400, "positive decimal integer"},
		{"wrong token", form(), []string{"Authorization", "Bearer wrong-token-0123456789"}, 401, ""},
		{"not utf-8", form("hub.secret", "\xff\xfe"), nil, 400, "hub.secret is not UTF-8"},
		{"huge", form("hub.secret", strings.Repeat("s", 20<<10)), nil, 413, "over 16384 bytes"},
	} {
		status, body := atomtest.HubRequest(t, h.hubURL(), c.form, c.header...)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, status, body, c.status, c.msg)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, h.hubURL(), strings.NewReader(form().Encode()))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a JSON body: %v %v", resp, err)
	}
	req, _ = http.NewRequest(http.MethodPut, h.hubURL(), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT /websub: %v %v", resp, err)
	}
	if n := len(sub.Verifications("/cb")); n != 0 || h.rdb.ZCard(context.Background(), keySubs).Val() != 0 {
		t.Fatalf("refused requests reached the callback (%d) or stored subscriptions", n)
	}

	// a subscriber with a token subscribes as websub:NAME (alice may read secret:*)
	secretTopic := h.topic(formatAtom, "secret:plans")
	if status, body := atomtest.HubRequest(t, h.hubURL(), form("hub.topic", secretTopic), "Authorization", "Bearer "+aliceToken); status != 202 {
		t.Fatalf("alice: %d %s", status, body)
	}
	h.eventually("alice's subscription", func() bool { return h.subscribed(secretTopic, cb) })
	if actor := h.rdb.HGet(context.Background(), prefixSub+subscriptionID(secretTopic, cb), "actor").Val(); actor != "alice" {
		t.Errorf("stored actor %q", actor)
	}
	// the hub is full (max_subscriptions: 1) for new subscriptions, not renewals
	if status, body := atomtest.HubRequest(t, h.hubURL(), form()); status != 503 || !strings.Contains(body, "limit of 1 subscriptions") {
		t.Errorf("a subscription beyond the limit: %d %s", status, body)
	}
	if status, _ := atomtest.HubRequest(t, h.hubURL(), form("hub.topic", secretTopic), "Authorization", "Bearer "+aliceToken); status != 202 {
		t.Errorf("a renewal at the limit: %d", status)
	}
}

func TestWebSubRefusesLoopbackWithoutAllowListAndLimitsRate(t *testing.T) {
	h := newHubHarness(t, "rate_limit: {per_ip: {rate: 0}}\nwebsub:\n  enabled: true\n  rate_limit: {per_ip: {rate: 0.001, burst: 3}}")
	sub := atomtest.NewSubscriber(t)
	h.create("news", thoonk.TypeFeed, nil)
	topic := h.topic(formatAtom, "news")
	for _, cb := range []string{sub.Callback("/cb"), strings.Replace(sub.Callback("/cb"), "127.0.0.1", "localhost", 1)} {
		status, body := atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("subscribe", topic, cb))
		if status != 400 || !strings.Contains(body, "loopback") {
			t.Errorf("%s: %d %s", cb, status, body)
		}
	}
	if status, body := atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("subscribe", topic, "http://[fe80::1%25eth0]/cb")); status != 400 {
		t.Errorf("link-local with a zone: %d %s", status, body)
	}
	status, body := atomtest.HubRequest(t, h.hubURL(), atomtest.Subscription("subscribe", topic, sub.Callback("/cb")))
	if status != http.StatusTooManyRequests || !strings.Contains(body, "too many") {
		t.Errorf("beyond the rate limit: %d %s", status, body)
	}
	if len(sub.Verifications("/cb")) != 0 {
		t.Error("a refused callback was called")
	}
}

func TestWebSubDeliveryChecksTheAddressItConnectsTo(t *testing.T) {
	// The hub's HTTP client checks every address it connects to, whatever
	// was checked when the subscription was made (DNS rebinding): without
	// an allow-list, loopback is refused at delivery time too.
	sub := atomtest.NewSubscriber(t)
	for _, c := range []struct {
		section string
		refused bool
	}{{"websub: {enabled: true}", true}, {hubSection(), false}} {
		w := newBridge(t, c.section).ws
		resp, err := w.client.Get(sub.Callback("/probe"))
		if resp != nil {
			resp.Body.Close()
		}
		if refused := errors.Is(err, errRefusedAddress); refused != c.refused {
			t.Errorf("%q: refused %v (%v), want %v", c.section, refused, err, c.refused)
		}
	}
	if n := len(sub.Verifications("/probe")); n != 1 {
		t.Errorf("%d requests reached the subscriber, want only the allowed one", n)
	}
}

func TestWebSubGoneAndDeniedEndSubscriptions(t *testing.T) {
	h, sub, topic := newsHub(t, hubSection("delivery: {drop_after: 300ms, retry: {attempts: 1000, min: 20ms, max: 50ms}}"),
		formatAtom, "/gone", "/broken")
	h.create("old", thoonk.TypeSorted, nil)
	h.subscribe(sub, h.topic(formatJSON, "old"), "/old")
	sub.Answer("/gone", http.StatusGone)
	sub.Answer("/broken", http.StatusBadGateway)

	h.publish("news", "1", `{"title":"x"}`)
	// 410: the subscriber ended it; nothing more is sent
	h.eventually("the 410 ends the subscription", func() bool { return !h.subscribed(topic, sub.Callback("/gone")) })
	// failing for longer than drop_after: denied, and told so
	denied := sub.WaitVerification(t, "/broken", "denied")
	if denied.Query.Get("hub.topic") != topic || !strings.Contains(denied.Query.Get("hub.reason"), "failed") {
		t.Errorf("denial %v", denied.Query)
	}
	if h.subscribed(topic, sub.Callback("/broken")) || h.dropped(reasonFailing) != 1 || h.dropped(reasonGone) != 1 {
		t.Errorf("dropped: failing %d, gone %d", h.dropped(reasonFailing), h.dropped(reasonGone))
	}
	if len(sub.Deliveries("/broken")) < 3 {
		t.Errorf("only %d attempts before the drop", len(sub.Deliveries("/broken")))
	}
	if n := len(sub.Verifications("/gone")); n != 1 {
		t.Errorf("a 410 got %d requests besides the verification", n-1)
	}

	// a deleted feed: its subscribers are told they are denied
	if err := h.store.Delete(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	denied = sub.WaitVerification(t, "/old", "denied")
	if !strings.Contains(denied.Query.Get("hub.reason"), "no longer exists") {
		t.Errorf("denial %v", denied.Query)
	}
	h.eventually("the denial is counted", func() bool { return h.dropped(reasonDenied) == 1 })
	if n := h.rdb.ZCard(context.Background(), keySubs).Val(); n != 0 {
		t.Errorf("%d subscriptions left", n)
	}
	if n := h.rdb.Exists(context.Background(), keyFeeds, docKey(formatJSON, "old"), docKey(formatAtom, "news")).Val(); n != 0 {
		t.Errorf("%d keys of feeds without subscriptions left", n)
	}
}

func TestWebSubLimitsDeliveriesPerCallback(t *testing.T) {
	h := newHubHarness(t, hubSection("delivery: {workers: 4, per_callback: 1}"))
	sub := atomtest.NewSubscriber(t)
	feeds := []string{"a", "b", "c"}
	for _, f := range feeds {
		h.create(f, thoonk.TypeFeed, nil)
		h.subscribe(sub, h.topic(formatAtom, f), "/shared")
	}
	release := sub.Hold("/shared")
	for _, f := range feeds {
		h.publish(f, "1", `{"title":"in `+f+`"}`)
	}
	sub.WaitDeliveries(t, "/shared", 1)
	h.eventually("the other deliveries wait", func() bool { return h.deliveries(outcomeDeferred) >= 2 })
	release()
	sub.WaitDeliveries(t, "/shared", 3)
	if n := sub.MaxInFlight("/shared"); n != 1 {
		t.Errorf("%d deliveries at once to one callback, want 1", n)
	}
}

func TestWebSubDefersFanOutsWhileTooManyDeliveriesWait(t *testing.T) {
	paths := []string{"/a", "/b", "/c", "/d"}
	h, sub, _ := newsHub(t, hubSection("delivery: {workers: 1, max_pending: 1}"), formatAtom, paths...)
	holds := map[string]func(){}
	for _, p := range paths {
		holds[p] = sub.Hold(p)
	}
	h.publish("news", "1", `{"title":"First"}`)
	// the one worker holds the first delivery; three wait
	var first string
	h.eventually("a delivery is held", func() bool {
		for _, p := range paths {
			if len(sub.Deliveries(p)) == 1 {
				first = p
				return true
			}
		}
		return false
	})
	h.publish("news", "2", `{"title":"Second"}`)
	jobs := h.store.Jobs(webSubQueue)
	h.eventually("the second change's fan-out is queued", func() bool {
		n, err := jobs.Counts(context.Background())
		return err == nil && n.Available == 4
	})
	for _, release := range holds {
		release()
	}
	h.eventually("the fan-out is deferred", func() bool { return h.metric(`feedbridge_websub_fanouts_total{outcome="deferred"}`) >= 1 })
	for _, p := range paths {
		sub.WaitDelivery(t, p, "Second")
	}
	if n := len(sub.Deliveries(first)); n != 2 {
		t.Errorf("%s got %d deliveries, want 2", first, n)
	}
}

func TestWebSubConfig(t *testing.T) {
	b := newBridge(t, "websub: {enabled: true}")
	if c := b.cfg.WebSub; c.Lease.Default != 240*time.Hour || c.Delivery.Retry.Attempts != 8 || c.Signature != "sha256" || b.ws == nil {
		t.Fatalf("defaults: %+v", c)
	}
	if newBridge(t, "").ws != nil {
		t.Fatal("the hub runs by default")
	}
	_, err := New(mustSection(t, "enabled: true\nwebsub:\n  enabled: true\n  surprise: 1"))
	if err == nil || !strings.Contains(err.Error(), `atom.websub.surprise: unknown key "surprise"`) {
		t.Fatalf("an unknown key: %v", err)
	}
	_, err = New(mustSection(t, `enabled: true
websub:
  enabled: true
  lease: {min: 500ms, default: 1h, max: 100ms}
  callbacks: {max_bytes: 10, allow: ["10.0.0.0/33", "not-an-ip"]}
  verify_timeout: 0s
  max_verifications: 0
  max_subscriptions: 0
  signature: sha1
  delivery: {timeout: 10s, job_timeout: 5s, workers: 0, per_callback: 0, max_pending: 0, retry: {attempts: -1, min: 0s, max: -1s}, drop_after: -1s}
  rate_limit: {per_ip: {rate: -1}, max_clients: 0}`))
	if err == nil {
		t.Fatal("a bad websub section was accepted")
	}
	for _, want := range []string{
		"atom.websub.lease.min: must be at least 1s", "atom.websub.lease.max: must be at least lease.min",
		"atom.websub.lease.default: must be between", "atom.websub.callbacks.max_bytes", "atom.websub.callbacks.allow[0]",
		"atom.websub.callbacks.allow[1]", "atom.websub.verify_timeout", "atom.websub.max_verifications",
		"atom.websub.max_subscriptions", "atom.websub.signature: \"sha1\" is not offered: use sha256",
		"atom.websub.delivery.job_timeout: must be longer than delivery.timeout", "atom.websub.delivery.workers",
		"atom.websub.delivery.per_callback", "atom.websub.delivery.max_pending", "atom.websub.delivery.retry.attempts",
		"atom.websub.delivery.retry.min", "atom.websub.delivery.retry.max", "atom.websub.delivery.drop_after",
		"atom.websub.rate_limit.per_ip.rate", "atom.websub.rate_limit.max_clients",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// FuzzWebSubTopic checks that any hub.topic is either refused or maps to
// a feed whose canonical URL maps back to the same feed (seeds run as a
// regular test).
func FuzzWebSubTopic(f *testing.F) {
	for _, s := range []string{
		"https://feeds.example.org/base/atom/news", "https://FEEDS.example.org/base/rss/team%3A1%2Ftasks",
		"https://feeds.example.org/base/json/n%65ws", "https://feeds.example.org/base/atom/a%2F..%2Fb",
		"https://feeds.example.org/base/atom/", "https://feeds.example.org/base/atom/x/y", "https://feeds.example.org/atom/x",
		"http://feeds.example.org/base/atom/news", "https://feeds.example.org/base/atom/news?after=1",
		"https://u:p@feeds.example.org/base/atom/news", "https://feeds.example.org/base/atom/%00", "https://feeds.example.org/base/atom/a*b",
		"https://feeds.example.org/base/xml/news", "%zz", "",
	} {
		f.Add(s)
	}
	w := newBridge(f, "base_url: https://feeds.example.org/base\nwebsub: {enabled: true}").ws
	f.Fuzz(func(t *testing.T, raw string) {
		feed, format, self, err := w.topicOf(raw)
		if err != nil {
			var eh *errHub
			if !errors.As(err, &eh) || eh.status != 400 {
				t.Fatalf("%q: %v is not a 400", raw, err)
			}
			return
		}
		if thoonk.ValidateFeedName(feed) != nil || mediaTypes[format] == "" {
			t.Fatalf("%q: feed %q format %q", raw, feed, format)
		}
		feed2, format2, self2, err := w.topicOf(self)
		if err != nil || feed2 != feed || format2 != format || self2 != self {
			t.Fatalf("%q -> %q does not map back: %q %q %q %v", raw, self, feed2, format2, self2, err)
		}
	})
}
