package xmpp

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

func section(t *testing.T, yaml string) *core.Section {
	t.Helper()
	root, err := core.ParseYAML("bridge.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return root.Sub("xmpp")
}

func TestXMPPNew(t *testing.T) {
	t.Run("absent or disabled", func(t *testing.T) {
		for _, y := range []string{"", "xmpp:\n  enabled: false\n"} {
			a, err := New(section(t, y))
			if err != nil || a != nil {
				t.Errorf("%q: %v, %v", y, a, err)
			}
		}
	})
	t.Run("a disabled section is still checked", func(t *testing.T) {
		_, err := New(section(t, "xmpp:\n  enabled: false\n  notification_type: loud\n"))
		if err == nil || !strings.Contains(err.Error(), "xmpp.notification_type") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("enabled needs the connection settings", func(t *testing.T) {
		_, err := New(section(t, "xmpp:\n  enabled: true\n"))
		for _, key := range []string{"xmpp.jid", "xmpp.server", "xmpp.secret"} {
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("error %v does not name %s", err, key)
			}
		}
	})
	t.Run("bad values name the key and the fix", func(t *testing.T) {
		_, err := New(section(t, `xmpp:
  enabled: true
  jid: user@pubsub.example.org
  server: example.org
  secret: x
  wait: -1s
  page_size: 0
  payloads:
    - feeds: ["logs:*"]
      format: yaml
  reconnect: {min: 0s, max: 1s}
  queue_bytes: 1024
  catch_up_max: 0
  max_subscriptions_per_jid: -1
  rate_limit: {domain_per_second: -1}
`))
		for _, want := range []string{
			"bridge.yaml:3: xmpp.jid: \"user@pubsub.example.org\" is not a domain JID",
			"bridge.yaml:4: xmpp.server", "xmpp.wait", "xmpp.page_size", "xmpp.payloads[0].format", "xmpp.reconnect",
			"xmpp.queue_bytes", "xmpp.catch_up_max", "xmpp.max_subscriptions_per_jid", "xmpp.rate_limit.domain_per_second",
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v lacks %q", err, want)
			}
		}
	})
	t.Run("unknown keys are refused", func(t *testing.T) {
		_, err := New(section(t, "xmpp:\n  enabled: true\n  jid: pubsub.example.org\n  sever: x\n"))
		if err == nil || !strings.Contains(err.Error(), `unknown key "sever"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("valid", func(t *testing.T) {
		a, err := New(section(t, "xmpp:\n  enabled: true\n  jid: PubSub.Example.org\n  server: 127.0.0.1:5347\n  secret: hunter2\n"+
			"  payloads:\n    - {feeds: [\"logs:*\"], format: text}\n    - {feeds: [\"*\"], format: json}\n"))
		if err != nil {
			t.Fatal(err)
		}
		b := a.(*Bridge)
		if b.cfg.JID != "pubsub.example.org" || b.cfg.Wait != defaultConfig().Wait || b.cfg.CatchUpMax != 1000 ||
			b.cfg.MaxSubscriptionsPerJID != 100 || b.cfg.QueueBytes != 64<<20 || b.cfg.RateLimit.DomainBurst != 1000 {
			t.Errorf("config %+v", b.cfg)
		}
		if got := b.cfg.format("logs:web") + " " + b.cfg.format("news"); got != "text json" {
			t.Errorf("payload formats %s, want the first matching rule's", got)
		}
		if s := fmt.Sprint(b.cfg.Secret); strings.Contains(s, "hunter2") {
			t.Errorf("the secret prints as %q", s)
		}
	})
}

// TestRunReconnectsAndStops checks the connection loop: a lost connection
// is re-established, the state follows, and Run leaves no goroutine
// behind once ctx ends.
func TestXMPPRunReconnectsAndStops(t *testing.T) {
	hub, _ := newHub(t)
	srv := startFakeServer(t, "pubsub.test", "s3cret")
	if g := adapterGoroutines(); len(g) > 0 {
		t.Fatalf("adapter goroutines before Run: %v", g)
	}
	b := &Bridge{cfg: testConfig("pubsub.test", srv.ln.Addr().String())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, hub) }()

	first := srv.accept()
	waitFor(t, "state up", func() bool { return hub.States()["xmpp"].State == core.StateUp })
	first.c.Close()
	second := srv.accept()
	waitFor(t, "state up again", func() bool { return hub.States()["xmpp"].State == core.StateUp })
	if hub.States()["xmpp"].LastError == "" {
		t.Error("the lost connection left no error in the adapter state")
	}
	// the new connection serves requests
	reply := second.ask(t, `<iq type='get' id='q' from='a@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if typ, _ := reply.attr("type"); typ != "result" {
		t.Fatalf("after reconnecting: %v", reply)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	<-second.closed
	waitFor(t, "Run's goroutines to end", func() bool { return len(adapterGoroutines()) == 0 })
}

// adapterGoroutines returns the stacks of goroutines running the adapter's
// code (not tests) or mellium's.
func adapterGoroutines() []string {
	buf := make([]byte, 1<<22)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if ownCode.MatchString(g) || strings.Contains(g, "mellium.im/") {
			out = append(out, g)
		}
	}
	return out
}

var ownCode = regexp.MustCompile(`/bridges/xmpp/[a-z]+\.go:`)

func TestXMPPRunHandshakeRefused(t *testing.T) {
	hub, _ := newHub(t)
	srv := startFakeServer(t, "pubsub.test", "another-secret")
	b := &Bridge{cfg: testConfig("pubsub.test", srv.ln.Addr().String())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, hub) }()
	waitFor(t, "a refused handshake in the state", func() bool {
		st := hub.States()["xmpp"]
		return st.State == core.StateReconnecting && strings.Contains(st.LastError, "check xmpp.jid and xmpp.secret")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFanout delivers one notification to each of 1,000 subscribers of
// one node and one of another node, exactly once each.
func TestXMPPFanout(t *testing.T) {
	const many = 1000
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "big", thoonk.TypeFeed, nil))
	must(t, e.store.Create(ctx, "small", thoonk.TypeFeed, nil))
	s := e.bridge.current.Load()
	for i := range many {
		if _, err := s.subs.add(ctx, "big", fmt.Sprintf("u%d@test", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.subs.add(ctx, "small", "solo@test", nil); err != nil {
		t.Fatal(err)
	}
	_, err := e.store.Feed("big").Publish(ctx, []byte(`{"big":true}`), "b1")
	must(t, err)
	_, err = e.store.Feed("small").Publish(ctx, []byte(`{"small":true}`), "s1")
	must(t, err)
	seen := map[string]bool{}
	for range many + 1 {
		to, _ := conn.next(t).attr("to")
		if seen[to] {
			t.Fatalf("%s notified twice", to)
		}
		seen[to] = true
	}
	if !seen["solo@test"] || !seen["u999@test"] {
		t.Fatal("a subscriber was not notified")
	}
}

// TestNotifierTakesTurns checks the scheduling that keeps a node with
// 1,000 subscribers from stalling the others: a node queued after a big
// fan-out is served after one turn, not after the whole fan-out.
func TestXMPPNotifierTakesTurns(t *testing.T) {
	hub, _ := newHub(t)
	cfg := testConfig("pubsub.test", "127.0.0.1:1")
	cfg.QueueSize = 16
	n := newNotifier(cfg, newConns(), hub.Log, nil)
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprintf("u%d@test", i)
	}
	n.push("big", retractEvent("big", "1"), many, nil)
	n.push("small", retractEvent("small", "2"), []string{"solo@test"}, nil)
	sent := 0
	soloAt := -1
	for {
		q, d, from, to := n.take()
		if q == nil {
			break
		}
		if q.feed == "small" {
			soloAt = sent
		}
		sent += to - from
		n.advance(q, d, to)
	}
	if sent != len(many)+1 || soloAt != perTurn {
		t.Fatalf("sent %d messages, the lone subscriber's at position %d; want %d and %d", sent, soloAt, len(many)+1, perTurn)
	}
}

func TestXMPPNotifierOverflowDropsOldest(t *testing.T) {
	hub, _ := newHub(t)
	cfg := testConfig("pubsub.test", "127.0.0.1:1")
	cfg.QueueSize = 2
	n := newNotifier(cfg, newConns(), hub.Log, nil)
	body := func(id string) []xml.Token { return retractEvent("node", id) }
	n.push("f", body("1"), []string{"a@test", "b@test"}, nil)
	n.push("f", body("2"), []string{"a@test"}, nil)
	n.push("f", body("3"), []string{"a@test"}, nil)
	n.push("g", body("4"), []string{"a@test"}, nil)
	if got := n.dropped.Load(); got != 2 {
		t.Errorf("dropped %d messages, want the 2 of the oldest notification", got)
	}
	if got := n.pending.Load(); got != 3 {
		t.Errorf("%d messages pending, want 3", got)
	}
	var order []string
	for {
		q, d, from, to := n.take()
		if q == nil {
			break
		}
		id, _ := bodyElement(t, d.body).child(nsPubsubEvent, "items").child(nsPubsubEvent, "retract").attr("id")
		order = append(order, q.feed+":"+id)
		n.advance(q, d, to)
		_ = from
	}
	if strings.Join(order, " ") != "f:2 g:4 f:3" {
		t.Errorf("sent in the order %v, want the nodes taking turns: f:2 g:4 f:3", order)
	}
	if n.pending.Load() != 0 {
		t.Errorf("%d pending after sending everything", n.pending.Load())
	}
}

// TestSubscriptionsPersist checks the Redis format and that a new process
// (a new registry) finds the subscriptions.
func TestXMPPSubscriptionsPersist(t *testing.T) {
	hub, m := newHub(t)
	ctx := context.Background()
	r := newRegistry(hub.Store.Client(), "pubsub.test")
	sub, err := r.add(ctx, "feed:1", "a@test/phone", nil)
	must(t, err)
	again, err := r.add(ctx, "feed:1", "a@test/phone", nil)
	must(t, err)
	if again.SubID != sub.SubID {
		t.Error("subscribing twice made a second subscription")
	}
	raw := m.HGet("feedbridge.xmpp.subscriptions:pubsub.test", "feed:1\x00a@test/phone")
	var stored struct {
		SubID string `json:"subid"`
	}
	if err := json.Unmarshal([]byte(raw), &stored); err != nil || stored.SubID != sub.SubID {
		t.Fatalf("stored %q", raw)
	}
	fresh := newRegistry(hub.Store.Client(), "pubsub.test")
	must(t, fresh.load(ctx))
	if got, ok := fresh.get("feed:1", "a@test/phone"); !ok || got.SubID != sub.SubID {
		t.Fatalf("reloaded %+v, %v", got, ok)
	}
	if subs := fresh.of("a@test"); len(subs) != 1 {
		t.Fatalf("subscriptions of a@test: %+v", subs)
	}
	must(t, fresh.remove(ctx, "feed:1"))
	if m.Exists("feedbridge.xmpp.subscriptions:pubsub.test") {
		t.Error("removing every subscription left the hash")
	}
}

// TestHandlerAnswersAtOnce covers the answers the stanza handler gives
// without a worker: they come in order and the stream survives them.
func TestXMPPHandlerAnswersAtOnce(t *testing.T) {
	_, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.RateLimit = RateLimit{PerSecond: 0.001, Burst: 2}
		c.MaxItemBytes = 1024
	})
	disco := `<query xmlns='http://jabber.org/protocol/disco#info'/>`
	ask := func(from, to, payload string) (string, string) {
		t.Helper()
		reply := conn.ask(t, `<iq type='get' id='q' from='`+from+`' to='`+to+`'>`+payload+`</iq>`)
		typ, _ := reply.attr("type")
		var cond string
		if e := reply.child(nsComponent, "error"); e != nil {
			for _, c := range e.children() {
				if c.Name.Space == nsStanzas && c.Name.Local != "text" {
					cond = c.Name.Local
				}
			}
		}
		return typ, cond
	}
	// messages and presence are not answered: the next answer is the IQ's
	conn.send(t, `<message from='a@test/r' to='pubsub.test'><body>hi</body></message><presence from='a@test/r' to='pubsub.test'/>`)
	if typ, cond := ask("a@test/r", "node@pubsub.test", disco); typ != "error" || cond != "service-unavailable" {
		t.Errorf("IQ to another JID of the domain: %s %s", typ, cond)
	}
	if typ, cond := ask("a@test/r", "pubsub.test", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'>`+
		strings.Repeat("<item id='x'/>", 2000)+`</items></pubsub>`); typ != "error" || cond != "bad-request" {
		t.Errorf("oversized IQ: %s %s", typ, cond)
	}
	if typ, cond := ask("a@test/r", "pubsub.test", disco); typ != "error" || cond != "resource-constraint" {
		t.Errorf("3rd request with a burst of 2: %s %s", typ, cond)
	}
	if typ, _ := ask("b@test/r", "pubsub.test", disco); typ != "result" {
		t.Errorf("another sender was limited: %s", typ)
	}
}

// TestXMPPNodeListCutShortSaysSo checks the service's node list when there
// are more nodes than one reply holds: the client that asked without RSM
// learns from the <set/> that the list goes on, and where.
func TestXMPPNodeListCutShortSaysSo(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	const nodes = thoonk.MaxPageSize + 1
	for i := range nodes {
		must(t, e.store.Create(ctx, fmt.Sprintf("n%04d", i), thoonk.TypeFeed, nil))
	}
	list := func(rsm string) (int, *element) {
		t.Helper()
		reply := conn.ask(t, `<iq type='get' id='l' from='a@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#items'>`+rsm+`</query></iq>`)
		query := reply.child(nsDiscoItems, "query")
		if query == nil {
			t.Fatalf("no disco#items result: %v", reply)
		}
		items := 0
		for _, c := range query.children() {
			if c.Name.Local == "item" {
				items++
			}
		}
		return items, query.child(nsRSM, "set")
	}
	n, set := list("")
	if n != thoonk.MaxPageSize || set == nil {
		t.Fatalf("got %d nodes and set %v; want %d and a <set/> saying the list goes on", n, set, thoonk.MaxPageSize)
	}
	count, last := set.child(nsRSM, "count"), set.child(nsRSM, "last")
	if count == nil || count.text() != strconv.Itoa(nodes) || last == nil || last.text() != fmt.Sprintf("n%04d", thoonk.MaxPageSize-1) {
		raw, _ := set.marshal()
		t.Fatalf("set %s, want count %d and the last node listed", raw, nodes)
	}
	if n, _ := list(`<set xmlns='http://jabber.org/protocol/rsm'><after>` + last.text() + `</after></set>`); n != 1 {
		t.Fatalf("after the last node listed: %d nodes, want 1", n)
	}
}

// deadlineConn records the write deadline in force at every write; hook,
// when set, runs before (applied false) and after (applied true) each
// write deadline is set.
type deadlineConn struct {
	net.Conn
	hook func(d time.Time, applied bool)

	mu       sync.Mutex
	deadline time.Time
	undated  int // writes made without a deadline
}

func (c *deadlineConn) SetWriteDeadline(d time.Time) error {
	if c.hook != nil {
		c.hook(d, false)
	}
	c.mu.Lock()
	c.deadline = d
	c.mu.Unlock()
	err := c.Conn.SetWriteDeadline(d)
	if c.hook != nil {
		c.hook(d, true)
	}
	return err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.deadline.IsZero() {
		c.undated++
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestXMPPSendKeepsEveryWriteBounded checks that a writer finishing never
// clears the deadline of the next one: B takes the stream as soon as A
// lets it go and sets its deadline; A's clearing must not then leave B
// writing without one (a stalled server would hold B, and every writer
// behind it, forever).
func TestXMPPSendKeepsEveryWriteBounded(t *testing.T) {
	srv := startFakeServer(t, "pubsub.test", "s3cret")
	raw, err := net.Dial("tcp", srv.ln.Addr().String())
	must(t, err)
	dc := &deadlineConn{Conn: raw}
	t.Cleanup(func() { raw.Close() })
	sess, err := component.NewSession(context.Background(), jid.MustParse("pubsub.test"), []byte("s3cret"), dc)
	must(t, err)
	fc := srv.accept()
	dc.mu.Lock()
	dc.undated = 0 // the handshake's writes
	dc.mu.Unlock()

	msg := func(id string) []xml.Token { return message("pubsub.test", "a@test", "headline", id, nil) }
	var (
		bSets    sync.Once
		bSet     = make(chan struct{})
		aCleared = make(chan struct{})
		bDone    = make(chan error, 1)
		phase    atomic.Int32 // 0: A writes, 1: A clears its deadline, 2: A cleared it
	)
	dc.hook = func(d time.Time, applied bool) {
		switch {
		case d.IsZero() && phase.CompareAndSwap(0, 1): // A is done writing: B wants the stream
			go func() { bDone <- send(nil, sess, time.Minute, msg("b")) }()
			select {
			case <-bSet: // B got the stream before A cleared the deadline
			case <-time.After(time.Second): // B waits for A to let go, as it should
			}
		case d.IsZero() && applied && phase.CompareAndSwap(1, 2):
			close(aCleared)
		case !d.IsZero() && applied && phase.Load() > 0: // B has set its deadline
			bSets.Do(func() {
				close(bSet)
				<-aCleared // B writes once A's clearing is done
			})
		}
	}
	must(t, send(nil, sess, time.Minute, msg("a")))
	must(t, <-bDone)
	for _, want := range []string{"a", "b"} {
		if id, _ := fc.next(t).attr("id"); id != want {
			t.Fatalf("message %q arrived, want %q", id, want)
		}
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.undated > 0 {
		t.Fatalf("%d writes went out without a deadline", dc.undated)
	}
}

// TestXMPPWaitingPublishHoldsNoWorker checks that a publish whose reply
// waits for its job's result (here, no worker ever finishes it) does not
// hold the worker that the next requests need: another sender's query on
// the same worker is answered at once, and the job is stored.
func TestXMPPWaitingPublishHoldsNoWorker(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.Workers = 1
		c.Wait = time.Minute
	})
	must(t, e.store.Create(context.Background(), "f", thoonk.TypeFeed, nil))
	conn.send(t, `<iq type='set' id='p1' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>`+
		`<publish node='f'><item id='i1'><json xmlns='urn:xmpp:json:0'>{}</json></item></publish></pubsub></iq>`)
	reply := conn.ask(t, `<iq type='get' id='q1' from='b@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if id, _ := reply.attr("id"); id != "q1" {
		raw, _ := reply.marshal()
		t.Fatalf("first answer %s, want the disco#info result", raw)
	}
	if n, err := e.store.Count(context.Background(), "feedbridge.actions"); err != nil || n != 1 {
		t.Fatalf("%d jobs stored (%v), want the publish's", n, err)
	}
}

// TestXMPPPublishMatchesNodeType checks XEP-0060 7.1.3.6: on a node whose
// meta-data announces a payload type (format json or text), a payload of
// another namespace is refused with invalid-payload and stores no job.
func TestXMPPPublishMatchesNodeType(t *testing.T) {
	all, err := thoonk.CompilePattern("*")
	must(t, err)
	e, conn := startEnv(t, "pubsub.test", func(c *Config) {
		c.Payloads = []PayloadRule{{Feeds: []string{"*"}, Format: formatJSON, feeds: []thoonk.Pattern{all}}}
	})
	ctx := context.Background()
	must(t, e.store.Create(ctx, "f", thoonk.TypeFeed, nil))
	publish := func(id, payload string) *element {
		return conn.ask(t, `<iq type='set' id='`+id+`' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>`+
			`<publish node='f'><item>`+payload+`</item></publish></pubsub></iq>`)
	}
	reply := publish("atom", `<entry xmlns='http://www.w3.org/2005/Atom'><title>t</title></entry>`)
	if e := reply.child(nsComponent, "error"); e == nil || e.child(nsStanzas, "bad-request") == nil || e.child(nsPubsubError, "invalid-payload") == nil {
		raw, _ := reply.marshal()
		t.Fatalf("an Atom entry on a JSON node: %s, want bad-request + invalid-payload", raw)
	}
	if typ, _ := publish("json", `<json xmlns='urn:xmpp:json:0'>{"a":1}</json>`).attr("type"); typ != "result" {
		t.Fatalf("JSON on a JSON node: %s", typ)
	}
	if n, err := e.store.Count(ctx, "feedbridge.actions"); err != nil || n != 1 {
		t.Fatalf("%d jobs stored (%v), want only the JSON publish's", n, err)
	}
}
