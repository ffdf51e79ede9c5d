package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// readyState returns a bridge's /readyz status and an adapter's state.
func readyState(addr, adapter string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var rd struct {
		Adapters map[string]struct {
			State string `json:"state"`
		} `json:"adapters"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&rd)
	return resp.StatusCode, rd.Adapters[adapter].State
}

// fleetLeader waits until exactly one of the bridges leads adapter (its
// state up, the others standby and ready) and returns its index.
func fleetLeader(t *testing.T, bridges []*testenv.Bridge, adapter string, skip int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, standby := -1, 0
		for i, b := range bridges {
			if i == skip || !b.Running() {
				continue
			}
			switch code, st := readyState(b.HTTPAddr, adapter); {
			case st == "up" && code == 200:
				if leader >= 0 {
					t.Fatalf("bridges %d and %d both lead %s", leader, i, adapter)
				}
				leader = i
			case st == "standby" && code == 200:
				standby++
			}
		}
		if leader >= 0 && standby == countRunning(bridges, skip)-1 {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single %s leader with ready standbys (leader %d, %d standby)", adapter, leader, standby)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countRunning(bridges []*testenv.Bridge, skip int) int {
	n := 0
	for i, b := range bridges {
		if i != skip && b.Running() {
			n++
		}
	}
	return n
}

// isBot matches lines from a bot of the fleet (the configured nick, or
// an alternate one while a frozen leader still holds it): anyone but the
// tests' alice.
func isBot(m *irc.Message) bool {
	return m.Prefix != nil && m.Prefix.User != "" && m.Prefix.Name != "alice"
}

// announced collects the bot's PRIVMSGs in channel until the one
// containing until arrives, and returns the items' texts (before it).
func announced(p *ircPerson, channel, until string, timeout time.Duration) []string {
	p.t.Helper()
	var got []string
	for {
		m := p.expect(until, timeout, func(m *irc.Message) bool {
			return isBot(m) && m.Command == "PRIVMSG" && m.Param(0) == channel
		})
		if strings.Contains(m.Trailing(), until) {
			return got
		}
		got = append(got, m.Trailing())
	}
}

// countEach counts how many of the announcements name each item.
func countEach(lines []string, items ...string) map[string]int {
	n := map[string]int{}
	for _, it := range items {
		for _, l := range lines {
			if strings.Contains(l, it) {
				n[it]++
			}
		}
	}
	return n
}

// startIRCFleet starts n bridges on e's Redis and ngIRCd with the irc
// section given.
func startIRCFleet(t *testing.T, e *ircEnv, section string, n int) []*testenv.Bridge {
	t.Helper()
	var bridges []*testenv.Bridge
	for range n {
		addr := testenv.FreeAddr(t)
		bridges = append(bridges, testenv.StartBridge(t, ircConfig(e.redis.URL, addr, e.ngircd.Addr, section), addr))
	}
	return bridges
}

// TestIRCFleet: three bridges on one Redis and one ngIRCd: one bot is in
// the channel and each item is announced once; kill -9 the leader and a
// standby takes the channel once the lease expires, posting what was
// published meanwhile once; SIGTERM the new leader and it hands over at
// once (its lease released, not expired).
func TestIRCFleet(t *testing.T) {
	e := startIRC(t, testenv.NgircdOptions{}, "news")
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#news")
	section := `  channels:
    - name: "#news"
      feeds: [news]
  catch_up: 20
fleet:
  lease_ttl: ` + fleetTTL.String() + `
`
	bridges := startIRCFleet(t, e, section, 3)
	alice.botJoined("#news")
	leader := fleetLeader(t, bridges, "irc", -1)
	for i := range 3 {
		e.publishOrdered(t, "news", fmt.Sprintf("first-%d", i))
	}
	m1 := e.publish(t, "news", "mark-1")
	lines := announced(alice, "#news", "mark-1", 15*time.Second)
	// a line counts as delivered once the server answered a PING after it
	// and the mark is stored: a crash before that posts it again (posting
	// twice beats losing)
	e.waitMark(t, "#news", "news", m1)
	if n := countEach(lines, "first-0", "first-1", "first-2"); n["first-0"] != 1 || n["first-1"] != 1 || n["first-2"] != 1 || len(lines) != 3 {
		t.Fatalf("three bridges announced %q", lines)
	}

	// kill -9 the leader, publish while nobody leads
	killed := time.Now()
	bridges[leader].Kill()
	e.publishOrdered(t, "news", "gap-0")
	e.publishOrdered(t, "news", "gap-1")
	alice.expect("a bot of the fleet joining again", 20*time.Second, func(m *irc.Message) bool {
		return m.Command == "JOIN" && isBot(m) && m.Param(0) == "#news"
	})
	takeover := time.Since(killed)
	next := fleetLeader(t, bridges, "irc", leader)
	m2 := e.publish(t, "news", "mark-2")
	lines = announced(alice, "#news", "mark-2", 20*time.Second)
	e.waitMark(t, "#news", "news", m2)
	if n := countEach(lines, "gap-0", "gap-1", "first-"); n["gap-0"] != 1 || n["gap-1"] != 1 || n["first-"] != 0 {
		t.Fatalf("after the leader's kill -9 the channel got %q", lines)
	}

	// SIGTERM the new leader: the last standby takes over at once
	stopped := time.Now()
	bridges[next].BeginTerminate()
	alice.expect("the last bot joining", 10*time.Second, func(m *irc.Message) bool {
		return m.Command == "JOIN" && isBot(m) && m.Param(0) == "#news"
	})
	handover := time.Since(stopped)
	if err := bridges[next].Wait(10*time.Second, "SIGTERM"); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	// in distinct milliseconds: items of one millisecond sort by id
	e.publishOrdered(t, "news", "after-term")
	e.publish(t, "news", "mark-3")
	lines = announced(alice, "#news", "mark-3", 20*time.Second)
	if n := countEach(lines, "after-term", "gap-", "first-"); n["after-term"] != 1 || n["gap-"] != 0 || n["first-"] != 0 {
		t.Fatalf("after SIGTERM the channel got %q", lines)
	}
	checkTakeover(t, "irc", fleetTTL, takeover, handover)
}

// fleetTTL is the lease TTL of the fleet tests.
const fleetTTL = 6 * time.Second

// checkTakeover logs how long a standby took to lead after kill -9 and
// after SIGTERM (the numbers in docs/benchmarks.md), and fails when the
// behaviour is wrong rather than slow: a standby must take an expired
// lease (kill -9) within two TTLs, and a stopping leader must release its
// lease (SIGTERM), which shows as a hand-over before the lease could have
// expired: it is renewed every third of the TTL, so at least two thirds
// were left.
func checkTakeover(t *testing.T, adapter string, ttl, takeover, handover time.Duration) {
	t.Helper()
	t.Logf("%s takeover: kill -9 %.2f s (lease TTL %v), SIGTERM %.2f s", adapter, takeover.Seconds(), ttl, handover.Seconds())
	if takeover > 2*ttl {
		t.Errorf("kill -9: a standby led %s %v later, want within two lease TTLs (%v)", adapter, takeover, 2*ttl)
	}
	if handover >= ttl*2/3 {
		t.Errorf("SIGTERM: the hand-over of %s took %v: the stopping leader did not release its lease (it would have expired after %v)", adapter, handover, ttl*2/3)
	}
}

// TestIRCFrozenLeaderSendsNothing: a leader frozen (SIGSTOP) past its
// lease loses it; a standby takes the channel; once the frozen one runs
// again it sends nothing more to the channel and stands by.
func TestIRCFrozenLeaderSendsNothing(t *testing.T) {
	e := startIRC(t, testenv.NgircdOptions{}, "news")
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#news")
	section := `  channels:
    - name: "#news"
      feeds: [news]
fleet:
  lease_ttl: 2s
`
	bridges := startIRCFleet(t, e, section, 2)
	alice.botJoined("#news")
	leader := fleetLeader(t, bridges, "irc", -1)
	before := e.publish(t, "news", "before")
	announced(alice, "#news", "before", 10*time.Second)
	e.waitMark(t, "#news", "news", before)

	bridges[leader].Freeze()
	other := 1 - leader
	deadline := time.Now().Add(20 * time.Second)
	for _, st := readyState(bridges[other].HTTPAddr, "irc"); st != "up"; _, st = readyState(bridges[other].HTTPAddr, "irc") {
		if time.Now().After(deadline) {
			t.Fatal("the standby never took over from a frozen leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// the new bot (under an alternate nick while the frozen one holds the
	// configured nick) joins and announces
	alice.expect("the standby's bot joining", 20*time.Second, func(m *irc.Message) bool {
		return m.Command == "JOIN" && isBot(m) && m.Param(0) == "#news"
	})
	e.publish(t, "news", "while-frozen")
	announced(alice, "#news", "while-frozen", 10*time.Second)

	const standby = "standby: another bridge process leads"
	standbys := strings.Count(bridges[leader].Log(), standby)
	bridges[leader].Thaw()
	// the thawed process runs again: it got the event of while-frozen
	// (and would announce it again), and its PING timer fires
	time.Sleep(3 * time.Second)
	e.publish(t, "news", "after-thaw")
	lines := announced(alice, "#news", "after-thaw", 10*time.Second)
	time.Sleep(time.Second) // a second after-thaw would come now
	alice.mu.Lock()
	n := countEach(alice.rawPrivmsgs("#news"), "while-frozen", "after-thaw")
	alice.mu.Unlock()
	if len(lines) != 0 || n["while-frozen"] != 1 || n["after-thaw"] != 1 {
		t.Fatalf("after the thaw: %q before after-thaw; counts %v", lines, n)
	}
	// it stands by now (a write it tried first was refused: "lease was lost")
	if strings.Count(bridges[leader].Log(), standby) == standbys {
		t.Errorf("the thawed leader did not become a standby:\n%s", bridges[leader].LogTail(20))
	}
}

// rawPrivmsgs returns the texts of every PRIVMSG to target received so far
// (p.mu held).
func (p *ircPerson) rawPrivmsgs(target string) []string {
	var out []string
	for _, l := range p.raw {
		m, err := irc.ParseMessage(l)
		if err == nil && m.Command == "PRIVMSG" && m.Param(0) == target {
			out = append(out, m.Trailing())
		}
	}
	return out
}

// xmppFleet is Redis, Prosody with the component, two bridges serving it
// and alice subscribed to public:live.
type xmppFleet struct {
	bridges []*testenv.Bridge
	alice   *xmppClient
	store   *thoonk.Store // a Go program's, without a journal (the bridge journals its changes)
}

// startXMPPFleet starts an xmppFleet, extra appended to the bridges'
// xmpp config.
func startXMPPFleet(t *testing.T, extra string) *xmppFleet {
	t.Helper()
	comp := testenv.ProsodyComponent{Domain: xmppService, Secret: "component-secret"}
	r := testenv.StartRedis(t)
	prosody := testenv.StartProsody(t, testenv.ProsodyOptions{Components: []testenv.ProsodyComponent{comp}, Users: xmppUsers})
	f := &xmppFleet{store: storeFor(t, r.URL)}
	if err := f.store.Create(t.Context(), "public:live", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		addr := testenv.FreeAddr(t)
		f.bridges = append(f.bridges, testenv.StartBridge(t, xmppBridgeConfig(r.URL, addr, comp, prosody.ComponentAddr, xmppTestACL, extra), addr))
	}
	fleetLeader(t, f.bridges, "xmpp", -1)
	f.alice = dialXMPP(t, prosody, "alice", xmppUsers["alice"], "a", nil)
	f.alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:live", "alice@localhost"))
	return f
}

// publish publishes an item of that id to public:live through store.
func (f *xmppFleet) publish(t *testing.T, store *thoonk.Store, id string) {
	t.Helper()
	if _, err := store.Feed("public:live").Publish(t.Context(), []byte(`{"id":"`+id+`"}`), id); err != nil {
		t.Fatal(err)
	}
}

// stored waits until the leader stored public:live's cursor at item id's
// revision (it does every 250 ms: a kill -9 before may notify the item
// again).
func (f *xmppFleet) stored(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cur, _ := f.store.Client().HGet(t.Context(), "feedbridge.xmpp.cursors:"+xmppService, "public:live").Result()
		if it, err := f.store.Item(t.Context(), "public:live", id); err == nil && it.Rev != "" && !thoonk.RevBefore(cur, it.Rev) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader never stored the cursor of public:live at %s (it is %q)", id, cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestXMPPFleet: two bridges serve one component: one holds it, the other
// stands by (ready, no warnings); a subscriber who subscribed through the
// first gets what was published while no process led the component and
// the next item after kill -9 hands the component to the second, each
// once, and the next once more after a SIGTERM hand-over.
func TestXMPPFleet(t *testing.T) {
	f := startXMPPFleet(t, "fleet:\n  lease_ttl: "+fleetTTL.String()+"\n")
	bridges, alice := f.bridges, f.alice
	publish := func(id string) { f.publish(t, f.store, id) }
	leader := fleetLeader(t, bridges, "xmpp", -1)
	publish("one")
	xmppExpect(t, alice, "one")
	f.stored(t, "one")
	if strings.Contains(bridges[1-leader].Log(), "check xmpp.jid") {
		t.Error("the standby logged connection failures")
	}

	killed := time.Now()
	bridges[leader].Kill()
	publish("while-no-leader") // caught up from the journal by the next leader
	next := fleetLeader(t, bridges, "xmpp", leader)
	takeover := time.Since(killed)
	publish("two")
	xmppExpect(t, alice, "while-no-leader")
	xmppExpect(t, alice, "two")
	alice.none(500 * time.Millisecond)

	bridges[leader].Start() // back as a standby
	fleetLeader(t, bridges, "xmpp", -1)
	stopped := time.Now()
	bridges[next].BeginTerminate()
	fleetLeader(t, bridges, "xmpp", next)
	handover := time.Since(stopped)
	if err := bridges[next].Wait(10*time.Second, "SIGTERM"); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	publish("three")
	xmppExpect(t, alice, "three")
	alice.none(500 * time.Millisecond)
	checkTakeover(t, "xmpp", fleetTTL, takeover, handover)
}

// TestXMPPFrozenLeaderSendsNothing: a leader frozen (SIGSTOP) past its
// lease loses it; the standby takes the lease but Prosody keeps the
// frozen connection (component_conflict_resolve defaults to kick_new);
// once the frozen process runs again it sends nothing and lets go, and
// the subscriber gets what was published meanwhile once.
func TestXMPPFrozenLeaderSendsNothing(t *testing.T) {
	f := startXMPPFleet(t, "  reconnect: {min: 200ms, max: 500ms}\nfleet:\n  lease_ttl: 2s\n")
	bridges, alice := f.bridges, f.alice
	publish := func(id string) { f.publish(t, f.store, id) }
	leader := fleetLeader(t, bridges, "xmpp", -1)
	publish("before")
	xmppExpect(t, alice, "before")
	f.stored(t, "before")

	bridges[leader].Freeze()
	other := 1 - leader
	deadline := time.Now().Add(20 * time.Second)
	for _, st := readyState(bridges[other].HTTPAddr, "xmpp"); st == "standby"; _, st = readyState(bridges[other].HTTPAddr, "xmpp") {
		if time.Now().After(deadline) {
			t.Fatal("the standby never took the lease of a frozen leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	publish("while-frozen")
	bridges[leader].Thaw()
	xmppExpect(t, alice, "while-frozen")
	alice.none(2 * time.Second)
	publish("after")
	xmppExpect(t, alice, "after")
	alice.none(time.Second)
	if !strings.Contains(bridges[leader].Log(), "standby: another bridge process leads") {
		t.Errorf("the thawed leader did not become a standby:\n%s", bridges[leader].LogTail(20))
	}
}

// TestXMPPKilledRightAfterSubscribe: the leader is killed (-9) at once
// after confirming a subscription, and an item is journaled while no
// process leads: the next leader notifies it, since a subscription's
// cursor is stored before the subscription is confirmed (else the next
// leader would start the node at the journal's end, past the item).
func TestXMPPKilledRightAfterSubscribe(t *testing.T) {
	f := startXMPPFleet(t, "fleet:\n  lease_ttl: 2s\n")
	leader := fleetLeader(t, f.bridges, "xmpp", -1)
	f.bridges[leader].Kill()
	journaled, err := thoonk.NewStore(f.store.Client(), thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	f.publish(t, journaled, "while-no-leader")
	fleetLeader(t, f.bridges, "xmpp", leader)
	xmppExpect(t, f.alice, "while-no-leader")
	f.alice.none(500 * time.Millisecond)
}
