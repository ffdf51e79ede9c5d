package xmpp

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

const discoInfo = `<query xmlns='http://jabber.org/protocol/disco#info'/>`

// askIQ sends an IQ get with payload from a JID and returns the answer,
// checking that it answers this request (no stray stanza before it).
func askIQ(t testing.TB, conn *fakeConn, id, from, to, payload string) *element {
	t.Helper()
	reply := conn.ask(t, `<iq type='get' id='`+id+`' from='`+from+`' to='`+to+`'>`+payload+`</iq>`)
	if got, _ := reply.attr("id"); got != id {
		raw, _ := reply.marshal()
		t.Fatalf("answer %s, want the answer to %s", raw, id)
	}
	return reply
}

// TestXMPPSubscriptionCap checks max_subscriptions_per_jid: an account
// (all its resources together) beyond the cap gets XEP-0060 6.1.3.9's
// error and nothing is stored; subscribing again to a node it follows
// already, and subscribing once it left another node, still work.
func TestXMPPSubscriptionCap(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", func(c *Config) { c.MaxSubscriptionsPerJID = 2 })
	ctx := context.Background()
	for _, f := range []string{"f1", "f2", "f3"} {
		must(t, e.store.Create(ctx, f, thoonk.TypeFeed, nil))
	}
	subscribe := func(id, node, j string) *element {
		t.Helper()
		return conn.ask(t, subscribeIQ(id, node, j))
	}
	for i, j := range []string{"a@test", "a@test/phone"} {
		if typ, _ := subscribe(fmt.Sprint("s", i), fmt.Sprint("f", i+1), j).attr("type"); typ != "result" {
			t.Fatalf("subscription %d refused", i+1)
		}
	}
	reply := subscribe("s3", "f3", "a@test")
	errEl := reply.child(nsComponent, "error")
	if cond, app := condition(reply); cond != "policy-violation" || app != "too-many-subscriptions" || errEl == nil {
		raw, _ := reply.marshal()
		t.Fatalf("3rd subscription with a cap of 2: %s, want policy-violation + too-many-subscriptions", raw)
	}
	if typ, _ := errEl.attr("type"); typ != "wait" {
		t.Errorf("error type %q, want wait (XEP-0060 6.1.3.9)", typ)
	}
	s := e.bridge.current.Load()
	if stored, _ := e.mini.HKeys("feedbridge.xmpp.subscriptions:pubsub.test"); len(stored) != 2 || s.subs.countOf("a@test") != 2 {
		t.Fatal("the refused subscription was stored")
	}
	if typ, _ := subscribe("s4", "f1", "a@test").attr("type"); typ != "result" {
		t.Fatal("subscribing again to a node followed already was refused")
	}
	if typ, _ := conn.ask(t, `<iq type='get' id='o' from='b@test/r' to='pubsub.test'>`+discoInfo+`</iq>`).attr("type"); typ != "result" {
		t.Fatal("another account is affected")
	}
	if typ, _ := conn.ask(t, `<iq type='set' id='u' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>`+
		`<unsubscribe node='f2' jid='a@test/phone'/></pubsub></iq>`).attr("type"); typ != "result" {
		t.Fatal("unsubscribe failed")
	}
	if typ, _ := subscribe("s5", "f3", "a@test").attr("type"); typ != "result" {
		t.Fatal("below the cap again, a subscription was refused")
	}
}

// TestXMPPNotifierMemoryBudget checks queue_bytes: when the pending
// notifications of all nodes together hold more, the oldest of any node
// is dropped first (counted and logged), the newest is always kept, and
// what remains is sent in the usual turns.
func TestXMPPNotifierMemoryBudget(t *testing.T) {
	hub, _ := newHub(t)
	logs := captureLog(hub)
	body := func(id string) []xml.Token { return retractEvent("node", id) }
	to := []string{"a@test", "b@test"}
	one := int64(encodedSize(body("1"))) + int64(len("a@test")+len("b@test"))
	cfg := testConfig("pubsub.test", "127.0.0.1:1")
	cfg.QueueBytes = int(2*one + one/2) // two deliveries fit, three do not
	n := newNotifier(cfg, newConns(), hub.Log, nil)
	n.push("f", body("1"), to, nil)
	n.push("g", body("2"), to, nil)
	n.push("f", body("3"), to, nil) // drops f:1, the oldest
	n.push("h", body("4"), to, nil) // drops g:2
	if got := n.dropped.Load(); got != 4 {
		t.Errorf("dropped %d messages, want the 4 of the two oldest notifications", got)
	}
	if got := n.bytes.Load(); got != 2*one {
		t.Errorf("%d bytes pending, want %d", got, 2*one)
	}
	if l := logs.String(); !strings.Contains(l, "queue_bytes") || !strings.Contains(l, "recipients_missed=2") {
		t.Errorf("the drop is not logged:\n%s", l)
	}
	var order []string
	for {
		q, d, _, to := n.take()
		if q == nil {
			break
		}
		id, _ := bodyElement(t, d.body).child(nsPubsubEvent, "items").child(nsPubsubEvent, "retract").attr("id")
		order = append(order, q.feed+":"+id)
		n.advance(q, d, to)
	}
	if got := strings.Join(slices.Compact(order), " "); got != "f:3 h:4" {
		t.Errorf("sent %s, want the two newest: f:3 h:4", got)
	}
	if n.bytes.Load() != 0 || n.pending.Load() != 0 {
		t.Errorf("%d bytes, %d messages pending after sending everything", n.bytes.Load(), n.pending.Load())
	}
	huge := make([]string, 100)
	for i := range huge {
		huge[i] = fmt.Sprintf("user%03d@test", i)
	}
	n.push("f", body("5"), to, nil)
	n.push("g", body("6"), huge, nil) // over the budget on its own: kept, the others go
	if q, d, _, _ := n.take(); q == nil || q.feed != "g" || len(d.to) != len(huge) {
		t.Fatal("the newest notification was dropped")
	}
}

// TestXMPPStalledServerDoesNotBlockTheReadLoop checks the answers the
// stanza handler writes itself: when the server stops reading, the write
// times out, the component drops the connection and reconnects, and on the
// new connection answers (the handler's and the workers') flow again.
func TestXMPPStalledServerDoesNotBlockTheReadLoop(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.writeTimeout = 200 * time.Millisecond
		c.RateLimit = RateLimit{}
		c.MaxItemBytes = 1 << 20
	})
	conn.stall()
	// requests the handler answers itself (IQs to another JID), each
	// answer carrying a 256 KiB id: far more than socket buffers hold
	flood := `<iq type='get' id='` + strings.Repeat("x", 256<<10) + `' from='a@test/r' to='node@pubsub.test'>` + discoInfo + `</iq>`
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { conn.c.Close() }) // ends the writer below (cleanups run last first)
	wg.Go(func() {
		for range 200 {
			if _, err := io.WriteString(conn.c, flood); err != nil {
				return
			}
		}
	})
	second := e.server.accept()
	if typ, _ := askIQ(t, second, "q1", "a@test/r", "pubsub.test", discoInfo).attr("type"); typ != "result" {
		t.Fatal("a worker's answer after the reconnect is not a result")
	}
	if cond, _ := condition(askIQ(t, second, "q2", "a@test/r", "node@pubsub.test", discoInfo)); cond != "service-unavailable" {
		t.Fatalf("the handler's own answer after the reconnect: %q", cond)
	}
	askIQ(t, second, "q3", "a@test/r", "pubsub.test", discoInfo) // exactly one answer to q2 came before
}

// TestXMPPDomainRateLimit checks rate_limit.domain_*: the accounts of one
// domain share a budget, a flooding account does not use it up for the
// others (its own limit comes first), and other domains are unaffected.
func TestXMPPDomainRateLimit(t *testing.T) {
	_, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.RateLimit = RateLimit{PerSecond: 0.001, Burst: 2, DomainPerSecond: 0.001, DomainBurst: 4}
	})
	n := 0
	ask := func(from string) string {
		t.Helper()
		n++
		reply := askIQ(t, conn, fmt.Sprint("q", n), from, "pubsub.test", discoInfo)
		if cond, _ := condition(reply); cond != "" {
			return cond + ": " + reply.child(nsComponent, "error").child(nsStanzas, "text").text()
		}
		return "ok"
	}
	var got []string
	for _, from := range []string{"a@x.test/1", "a@x.test/2", "a@x.test/3", "b@x.test/1", "b@x.test/1", "c@x.test/1", "a@y.test/1"} {
		got = append(got, ask(from))
	}
	want := []string{"ok", "ok", "resource-constraint: too many requests from a@x.test: slow down", "ok", "ok",
		"resource-constraint: too many requests from x.test: slow down", "ok"}
	if !slices.Equal(got, want) {
		t.Fatalf("answers\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestXMPPUnsubscribeWithoutReadAccess checks that a subscriber who may no
// longer read a node can still leave it, while the node stays hidden to
// anybody not subscribed.
func TestXMPPUnsubscribeWithoutReadAccess(t *testing.T) {
	hub, m := newHub(t)
	ctx := context.Background()
	must(t, hub.Store.Create(ctx, "f", thoonk.TypeFeed, nil))
	// subscribed when the ACL let a@test read; it no longer does
	_, err := newRegistry(hub.Store.Client(), "pubsub.test").add(ctx, "f", "a@test", nil)
	must(t, err)
	hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"xmpp:b@test"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	_, conn := startEnvWith(t, hub, m, "pubsub.test", nil)
	unsubscribe := `<iq type='set' id='u1' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` +
		`<unsubscribe node='f' jid='a@test'/></pubsub></iq>`
	if reply := conn.ask(t, unsubscribe); condition1(reply) != "" {
		raw, _ := reply.marshal()
		t.Fatalf("unsubscribe without read access: %s", raw)
	}
	if m.Exists("feedbridge.xmpp.subscriptions:pubsub.test") {
		t.Fatal("the subscription is still stored")
	}
	if got := condition1(conn.ask(t, unsubscribe)); got != "item-not-found" {
		t.Fatalf("unsubscribing again: %q, want item-not-found (the node stays hidden)", got)
	}
}

// condition1 returns an answer's defined condition ("" for a result).
func condition1(iq *element) string {
	cond, _ := condition(iq)
	return cond
}

// TestXMPPSubscriptionListCutSaysSo checks a subscription list longer than
// one stanza holds: the reply says with a <set/> that it goes on, and RSM
// pages lead to every subscription once.
func TestXMPPSubscriptionListCutSaysSo(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.MaxStanzaBytes = 16 << 10
		c.MaxSubscriptionsPerJID = 0
	})
	ctx := context.Background()
	s := e.bridge.current.Load()
	const subs = 80
	for i := range subs {
		_, err := s.subs.add(ctx, fmt.Sprintf("n%03d-%s", i, strings.Repeat("x", 200)), "a@test/r", nil)
		must(t, err)
	}
	seen := map[string]bool{}
	rsm, pages := "", 0
	for {
		pages++
		reply := askIQ(t, conn, fmt.Sprint("l", pages), "a@test/r", "pubsub.test",
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions/>`+rsm+`</pubsub>`)
		list := reply.child(nsPubsub, "pubsub")
		var last string
		for _, sub := range list.child(nsPubsub, "subscriptions").children() {
			node, _ := sub.attr("node")
			if seen[node] {
				t.Fatalf("%s listed twice", node)
			}
			seen[node] = true
			last, _ = sub.attr("subid")
		}
		set := list.child(nsRSM, "set")
		if len(seen) == subs {
			break
		}
		if set == nil || set.child(nsRSM, "count").text() != fmt.Sprint(subs) || set.child(nsRSM, "last").text() != last {
			raw, _ := reply.marshal()
			t.Fatalf("page %d lists %d of %d subscriptions without a <set/> saying where it stopped: %.300s", pages, len(seen), subs, raw)
		}
		rsm = `<set xmlns='http://jabber.org/protocol/rsm'><after>` + last + `</after></set>`
	}
	if pages < 2 {
		t.Fatalf("all %d subscriptions fit in one reply: the test does not test the cut", subs)
	}
}
