package xmpp

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// drain plays the notifier's sending without a connection: it takes every
// queued delivery, marks it sent (running what a completed delivery
// runs, as the notifier does) and returns the notifications in order
// (see notified).
func drain(t testing.TB, n *notifier) []string {
	t.Helper()
	var got []string
	for {
		q, d, from, to := n.take()
		if q == nil {
			return got
		}
		if from == 0 {
			got = append(got, notified(messageOf(t, d.body))...)
		}
		if done := n.advance(q, d, to); done != nil {
			done()
		}
	}
}

// notified describes a notification: "id" per item (with "@position"
// for a move), "-id" per retraction, "delete" for a node's deletion.
func notified(msg *element) []string {
	ev := msg.child(nsPubsubEvent, "event")
	if ev == nil {
		return nil
	}
	if ev.child(nsPubsubEvent, "delete") != nil {
		return []string{"delete"}
	}
	var out []string
	if items := ev.child(nsPubsubEvent, "items"); items != nil {
		for _, it := range items.children() {
			id, _ := it.attr("id")
			switch it.Name.Local {
			case "item":
				if pos, _ := attrNS(it, nsRev, "position"); pos != "" {
					id += "@" + pos
				}
				out = append(out, id)
			case "retract":
				out = append(out, "-"+id)
			}
		}
	}
	return out
}

// subscribeIQ is a subscribe request of a@test/r for node.
func subscribeIQ(id, node, j string) string {
	return `<iq type='set' id='` + id + `' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` +
		`<subscribe node='` + node + `' jid='` + j + `'/></pubsub></iq>`
}

// follow subscribes jid to feed as the subscribe request does (the node's
// cursor starts at its journal's end) without sending the last item.
func follow(t testing.TB, s *service, feed, jid string) {
	t.Helper()
	ctx := context.Background()
	_, err := s.subs.add(ctx, feed, jid, nil)
	must(t, err)
	nc, err := s.lockCursor(ctx, feed)
	must(t, err)
	nc.mu.Unlock()
}

// resync delivers a resync to the dispatcher (events were lost) and
// returns what the subscribers were sent.
func resync(t testing.TB, s *service) []string {
	t.Helper()
	s.onEvent(context.Background(), thoonk.Event{Type: thoonk.EventResync, Reason: thoonk.ResyncConnected})
	return drain(t, s.notify)
}

// journalEvents returns feed's journal events after rev, as the listener
// delivers them.
func journalEvents(t testing.TB, s *service, feed, after string) []thoonk.Event {
	t.Helper()
	es, _, err := s.hub.Store.Journal(feed).Read(context.Background(), after, 1000)
	must(t, err)
	evs := make([]thoonk.Event, len(es))
	for i, e := range es {
		evs[i] = e.Event(feed)
	}
	return evs
}

// TestXMPPRestartCatchesUp checks that nothing is lost across a bridge
// restart: what changed while no bridge ran (publishes, an edit, a
// retraction) reaches the subscriber once the bridge is back, in the
// order it happened, exactly once, and live notifications go on.
func TestXMPPRestartCatchesUp(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "f", thoonk.TypeFeed, nil))
	f := e.store.Feed("f")
	publish := func(id, item string) {
		t.Helper()
		_, err := f.Publish(ctx, []byte(item), id)
		must(t, err)
	}
	next := func(want string) {
		t.Helper()
		if got := notified(conn.next(t)); !slices.Equal(got, []string{want}) {
			t.Fatalf("notified %v, want %s", got, want)
		}
	}
	publish("i0", `{"n":0}`)
	if typ, _ := conn.ask(t, subscribeIQ("s1", "f", "a@test")).attr("type"); typ != "result" {
		t.Fatal("subscribe failed")
	}
	next("i0") // the last item
	publish("i1", `{"n":1}`)
	next("i1")

	e.stop()
	publish("i2", `{"n":2}`)
	publish("i3", `{"n":3}`)
	publish("i0", `{"n":0,"edited":true}`)
	must(t, f.Retract(ctx, "i1"))
	conn = e.restart()
	for _, want := range []string{"i2", "i3", "i0", "-i1"} {
		next(want)
	}
	conn.quiet(t)
	publish("i4", `{"n":4}`)
	next("i4")
	conn.quiet(t)
}

// TestXMPPBurstInOneMillisecond checks the live path when many items
// share a publish time (the feed then orders them by id, not by publish
// order): each reaches the subscriber exactly once.
func TestXMPPBurstInOneMillisecond(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "f", thoonk.TypeFeed, nil))
	if typ, _ := conn.ask(t, subscribeIQ("s1", "f", "a@test")).attr("type"); typ != "result" {
		t.Fatal("subscribe failed")
	}
	e.mini.SetTime(time.Now())
	want := map[string]bool{}
	for range 200 {
		id := thoonk.NewID()
		want[id] = true
		_, err := e.store.Feed("f").Publish(ctx, []byte(`{}`), id)
		must(t, err)
	}
	for range len(want) {
		ids := notified(conn.next(t))
		if len(ids) != 1 || !want[ids[0]] {
			t.Fatalf("notified %v: not one of the items, or notified twice", ids)
		}
		delete(want, ids[0])
	}
	conn.quiet(t)
}

// TestXMPPResyncCatchesUpExactly checks a catch-up after lost events: the
// subscribers get exactly the changes made since the last one queued, in
// order (items sharing a millisecond, an edit, the retraction of the last
// item notified), and a second resync sends nothing.
func TestXMPPResyncCatchesUpExactly(t *testing.T) {
	s, hub, m := offlineService(t)
	ctx := context.Background()
	feed := hub.Store.Feed("f")
	publish := func(id, item string) {
		t.Helper()
		_, err := feed.Publish(ctx, []byte(item), id)
		must(t, err)
	}
	at := time.UnixMilli(1_800_000_000_000)
	m.SetTime(at)
	publish("m", "0")
	follow(t, s, "f", "x@test")

	// lost events: two items in the millisecond of the last one
	publish("z", "1")
	publish("a", "2")
	if got := resync(t, s); !slices.Equal(got, []string{"z", "a"}) {
		t.Fatalf("first resync notified %v, want z a (in publish order)", got)
	}
	if got := resync(t, s); len(got) != 0 {
		t.Fatalf("second resync notified %v again", got)
	}
	must(t, feed.Retract(ctx, "a"))
	publish("m", "0 edited")
	m.SetTime(at.Add(time.Millisecond))
	publish("b", "3")
	if got := resync(t, s); !slices.Equal(got, []string{"-a", "m", "b"}) {
		t.Fatalf("third resync notified %v, want the retraction of a, the edit of m, then b", got)
	}
	if got := resync(t, s); len(got) != 0 {
		t.Fatalf("fourth resync notified %v again", got)
	}
}

// TestXMPPLiveEventsOnceEach: a live change queued by a catch-up already
// (its event arrives after the catch-up read it) is not queued again;
// events of an older change, or repeated, change nothing. A foreign
// writer's item scored far in the past (a lagging clock) is notified like
// any other: the journal's order counts, not the score.
func TestXMPPLiveEventsOnceEach(t *testing.T) {
	s, hub, _ := offlineService(t)
	ctx := context.Background()
	follow(t, s, "f", "x@test")
	start, err := hub.Store.Journal("f").Last(ctx)
	must(t, err)
	_, err = hub.Store.Feed("f").Publish(ctx, []byte("one"), "one")
	must(t, err)
	// a thoonk.py writer whose clock lags a minute, journaled by the
	// fleet's journaler (Observe) as it sees the schema's event
	must(t, hub.Store.Client().ZAdd(ctx, "feed.ids:f", redis.Z{Score: float64(time.Now().Add(-time.Minute).Unix()), Member: "slow"}).Err())
	must(t, hub.Store.Client().HSet(ctx, "feed.items:f", "slow", "late").Err())
	_, err = hub.Store.Observe(ctx, thoonk.Event{Type: thoonk.EventPublish, Feed: "f", ID: "slow", Item: []byte("late")})
	must(t, err)
	evs := journalEvents(t, s, "f", start)
	if len(evs) != 2 {
		t.Fatalf("journal holds %d changes, want 2", len(evs))
	}
	for _, ev := range evs {
		s.onEvent(ctx, ev)
	}
	if got := drain(t, s.notify); !slices.Equal(got, []string{"one", "slow"}) {
		t.Fatalf("live events notified %v, want one, slow", got)
	}
	for _, ev := range append(evs, evs[0]) { // repeated, late
		s.onEvent(ctx, ev)
	}
	if got := drain(t, s.notify); len(got) != 0 {
		t.Fatalf("repeated events notified %v again", got)
	}
	// a catch-up reads a change whose live event comes later
	_, err = hub.Store.Feed("f").Publish(ctx, []byte("two"), "two")
	must(t, err)
	if got := resync(t, s); !slices.Equal(got, []string{"two"}) {
		t.Fatalf("resync notified %v, want two", got)
	}
	for _, ev := range journalEvents(t, s, "f", evs[1].Rev) {
		s.onEvent(ctx, ev)
	}
	if got := drain(t, s.notify); len(got) != 0 {
		t.Fatalf("the live event of a caught-up change notified %v again", got)
	}
}

// TestXMPPSortedFeedCatchUp: a sorted feed's inserts and moves (each with
// the item's new position), edits and retractions made while events were lost reach its
// subscribers in order.
func TestXMPPSortedFeedCatchUp(t *testing.T) {
	s, hub, _ := offlineService(t)
	ctx := context.Background()
	must(t, hub.Store.Create(ctx, "list", thoonk.TypeSorted, nil))
	l := hub.Store.Sorted("list")
	one, err := l.Append(ctx, []byte("1"))
	must(t, err)
	follow(t, s, "list", "x@test")
	two, err := l.Append(ctx, []byte("2"))
	must(t, err)
	must(t, l.Move(ctx, two, thoonk.Position{Kind: thoonk.PosBegin}))
	must(t, l.Edit(ctx, one, []byte("1b")))
	must(t, l.Retract(ctx, one))
	want := []string{two + "@:end", two + "@begin:", one, "-" + one}
	if got := resync(t, s); !slices.Equal(got, want) {
		t.Fatalf("caught up %v, want %v", got, want)
	}
}

// catchUpMax2 returns a service with catch_up_max 2 on a hub holding the
// plain feed f, and its captured log.
func catchUpMax2(t *testing.T) (*service, *core.Hub, *testenv.LogBuffer) {
	t.Helper()
	hub, _ := newHub(t)
	logs := captureLog(hub)
	cfg := testConfig("pubsub.test", "127.0.0.1:1")
	cfg.CatchUpMax = 2
	s := newService(cfg, hub, newConns())
	must(t, hub.Store.Create(context.Background(), "f", thoonk.TypeFeed, nil))
	return s, hub, logs
}

// TestXMPPCatchUpMax checks the bound on a catch-up: with more missed
// changes than catch_up_max, subscribers get the newest ones and the
// number skipped is logged.
func TestXMPPCatchUpMax(t *testing.T) {
	s, hub, logs := catchUpMax2(t)
	ctx := context.Background()
	publish := func(id string) {
		t.Helper()
		_, err := hub.Store.Feed("f").Publish(ctx, []byte(`{}`), id)
		must(t, err)
	}
	publish("i0")
	follow(t, s, "f", "x@test")
	for i := 1; i <= 5; i++ {
		publish("i" + strconv.Itoa(i))
	}
	s.catchUp(ctx, "test")
	if got := drain(t, s.notify); !slices.Equal(got, []string{"i4", "i5"}) {
		t.Fatalf("caught up %v, want the newest 2: i4 i5", got)
	}
	if l := logs.String(); !strings.Contains(l, "catch_up_max") || !strings.Contains(l, "skipped=3") {
		t.Fatalf("the 3 skipped changes are not logged:\n%s", l)
	}
}

// TestXMPPJournalGapSendsNewest: when the journal no longer holds a node's
// cursor (it was lost, say), the subscribers get the feed's newest items
// (oldest first) and the reason is logged; the node then follows the
// journal again.
func TestXMPPJournalGapSendsNewest(t *testing.T) {
	s, hub, logs := catchUpMax2(t)
	ctx := context.Background()
	_, err := hub.Store.Feed("f").Publish(ctx, []byte(`{}`), "0")
	must(t, err)
	follow(t, s, "f", "x@test")
	for _, id := range []string{"a", "b", "c"} {
		_, err := hub.Store.Feed("f").Publish(ctx, []byte(`{}`), id)
		must(t, err)
		nextMillisecond()
	}
	must(t, hub.Store.Client().Del(ctx, "feedbridge.journal:f", "feedbridge.journal.meta:f").Err()) // lost
	_, err = hub.Store.Feed("f").Publish(ctx, []byte(`{}`), "d")
	must(t, err)
	if got := resync(t, s); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("after the gap %v, want the newest 2 items: c d", got)
	}
	if l := logs.String(); !strings.Contains(l, "no longer in the journal") {
		t.Fatalf("the gap is not logged:\n%s", l)
	}
	_, err = hub.Store.Feed("f").Publish(ctx, []byte(`{}`), "e")
	must(t, err)
	if got := resync(t, s); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("then %v, want e", got)
	}
}

// TestXMPPCursorsCoalesceWrites checks the cursors' storage: changes reach
// Redis only at a flush, one value per node however many notifications; a
// stored cursor only moves on (a late flush of an older one, as from a
// process that lost the lease, changes nothing); without a valid lease
// nothing is written; a new process loads them; a dropped node's cursor
// is deleted.
func TestXMPPCursorsCoalesceWrites(t *testing.T) {
	hub, m := newHub(t)
	ctx := context.Background()
	const key = "feedbridge.xmpp.cursors:pubsub.test"
	c := newCursors(hub.Store, "pubsub.test", hub.Log)
	before := m.CommandCount()
	nc := c.start("f", "1000-0")
	for i := range 100 {
		c.delivered("f", nc, strconv.Itoa(1001+i)+"-0")
	}
	if n := m.CommandCount(); n != before {
		t.Fatalf("%d Redis commands before the flush, want none", n-before)
	}
	must(t, c.flush(ctx))
	if got := m.HGet(key, "f"); got != "1100-0" {
		t.Fatalf("stored %q, want the last cursor 1100-0", got)
	}
	late := newCursors(hub.Store, "pubsub.test", hub.Log) // a process that lost the lease
	late.delivered("f", late.start("f", "1050-0"), "1060-0")
	must(t, late.flush(ctx))
	if got := m.HGet(key, "f"); got != "1100-0" {
		t.Fatalf("a late flush moved the cursor back to %q", got)
	}
	lapsed := false
	c.valid = func() bool { return !lapsed }
	lapsed = true
	c.delivered("f", nc, "1200-0")
	must(t, c.flush(ctx))
	if got := m.HGet(key, "f"); got != "1100-0" {
		t.Fatalf("written %q without a valid lease", got)
	}
	lapsed = false

	again := newCursors(hub.Store, "pubsub.test", hub.Log)
	must(t, again.load(ctx))
	if nc, ok := again.get("f"); !ok || again.pulledOf(nc) != "1100-0" {
		t.Fatalf("loaded %v, want 1100-0", ok)
	}
	c.forget("f", func() bool { return false })
	if _, ok := c.get("f"); !ok {
		t.Fatal("a node with subscribers lost its cursor")
	}
	c.forget("f", func() bool { return true })
	must(t, c.flush(ctx))
	if m.Exists(key) {
		t.Fatal("a dropped node's cursor stays in Redis")
	}
}

// TestXMPPSubscribeWhilePublishing checks a subscription that meets a
// publish: an item published after the subscription was stored, but
// before its last item was sent, reaches the new subscriber once, after
// the last item from before the subscription.
func TestXMPPSubscribeWhilePublishing(t *testing.T) {
	s, hub, _ := offlineService(t)
	ctx := context.Background()
	feed := hub.Store.Feed("f")
	_, err := feed.Publish(ctx, []byte("old"), "old")
	must(t, err)
	start, err := hub.Store.Journal("f").Last(ctx)
	must(t, err)

	req, ok := parseIQ([]byte(subscribeIQ("s1", "f", "a@test")), testReqLimits)
	if !ok {
		t.Fatal("subscribe request did not parse")
	}
	who := caller{bare: "a@test", actor: core.Actor{Protocol: "xmpp", ID: "a@test"}}
	reply, after, serr := s.subscribe(ctx, req, who)
	if serr != nil || reply == nil || after == nil {
		t.Fatalf("subscribe: %v", serr)
	}
	// the subscription is stored and its reply on its way: a publish now
	_, err = feed.Publish(ctx, []byte("new"), "new")
	must(t, err)
	evs := journalEvents(t, s, "f", start)
	queued := make(chan struct{})
	go func() {
		defer close(queued)
		for _, ev := range evs {
			s.onEvent(ctx, ev)
		}
	}()
	after() // the reply went out
	<-queued
	if got := drain(t, s.notify); !slices.Equal(got, []string{"old", "new"}) {
		t.Fatalf("the new subscriber got %v, want the last item old, then new", got)
	}
}

// TestXMPPResyncCatchesUpEveryNode checks a catch-up over many nodes (read
// several at once): each node's missed item reaches its subscriber once,
// and a node whose feed was deleted meanwhile is notified as deleted.
func TestXMPPResyncCatchesUpEveryNode(t *testing.T) {
	s, hub, _ := offlineService(t)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 100 {
		feed := "n" + strconv.Itoa(i)
		must(t, hub.Store.Create(ctx, feed, thoonk.TypeFeed, nil))
		follow(t, s, feed, "x@test")
		id := "item-of-" + feed
		_, err := hub.Store.Feed(feed).Publish(ctx, []byte(`{}`), id)
		must(t, err)
		want[id] = true
	}
	_, err := s.subs.add(ctx, "f", "x@test", nil)
	must(t, err)
	must(t, hub.Store.Delete(ctx, "f"))

	s.onEvent(ctx, thoonk.Event{Type: thoonk.EventResync, Reason: thoonk.ResyncConnected})
	deleted := 0
	for {
		q, d, _, to := s.notify.take()
		if q == nil {
			break
		}
		msg := messageOf(t, d.body)
		switch ids := notified(msg); {
		case len(ids) == 1 && want[ids[0]]:
			delete(want, ids[0])
		case len(ids) == 1 && ids[0] == "delete" && q.feed == "f":
			deleted++
		default:
			raw, _ := msg.marshal()
			t.Fatalf("unexpected notification on %s: %s", q.feed, raw)
		}
		s.notify.advance(q, d, to)
	}
	if len(want) > 0 || deleted != 1 {
		t.Fatalf("%d nodes not caught up, %d delete notifications", len(want), deleted)
	}
}

// TestXMPPSubscribeBeforeAForeignChangeIsJournaled: a foreign writer's
// publish that the journaler has not recorded yet is the feed's newest
// item when someone subscribes: the subscriber gets it once, as the
// notification of its journal entry (not also as the last item).
func TestXMPPSubscribeBeforeAForeignChangeIsJournaled(t *testing.T) {
	s, hub, _ := offlineService(t)
	ctx := context.Background()
	_, err := hub.Store.Feed("f").Publish(ctx, []byte("old"), "old")
	must(t, err)
	// thoonk.py's publish: the schema's keys, no journal entry yet
	must(t, hub.Store.Client().ZAdd(ctx, "feed.ids:f", redis.Z{Score: float64(time.Now().Add(time.Second).UnixMilli()), Member: "new"}).Err())
	must(t, hub.Store.Client().HSet(ctx, "feed.items:f", "new", "foreign").Err())

	req, ok := parseIQ([]byte(subscribeIQ("s1", "f", "a@test")), testReqLimits)
	if !ok {
		t.Fatal("subscribe request did not parse")
	}
	who := caller{bare: "a@test", actor: core.Actor{Protocol: "xmpp", ID: "a@test"}}
	_, after, serr := s.subscribe(ctx, req, who)
	if serr != nil {
		t.Fatalf("subscribe: %v", serr)
	}
	after()
	start, err := hub.Store.Journal("f").Last(ctx)
	must(t, err)
	_, err = hub.Store.Observe(ctx, thoonk.Event{Type: thoonk.EventPublish, Feed: "f", ID: "new", Item: []byte("foreign")}) // the journaler
	must(t, err)
	for _, ev := range journalEvents(t, s, "f", start) {
		s.onEvent(ctx, ev)
	}
	if got := drain(t, s.notify); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("the subscriber got %v, want new once", got)
	}
}
