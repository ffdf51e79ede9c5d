package xmpp

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// drain plays the notifier's sending without a connection: it takes every
// queued delivery, marks it sent (running what a completed delivery
// runs, as the notifier does) and returns the notified item ids in order.
func drain(t testing.TB, n *notifier) []string {
	t.Helper()
	var ids []string
	for {
		q, d, from, to := n.take()
		if q == nil {
			return ids
		}
		if from == 0 {
			ids = append(ids, notifiedIDs(messageOf(t, d.body))...)
		}
		if done := n.advance(q, d, to); done != nil {
			done()
		}
	}
}

// subscribeIQ is a subscribe request of a@test/r for node.
func subscribeIQ(id, node, j string) string {
	return `<iq type='set' id='` + id + `' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'>` +
		`<subscribe node='` + node + `' jid='` + j + `'/></pubsub></iq>`
}

// TestXMPPRestartCatchesUp checks that nothing is lost across a bridge
// restart: the items published while no bridge ran reach the subscriber
// once the bridge is back (oldest first, an edit included), exactly once,
// and live notifications go on.
func TestXMPPRestartCatchesUp(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "f", thoonk.TypeFeed, nil))
	publish := func(id, item string) {
		t.Helper()
		_, err := e.store.Feed("f").Publish(ctx, []byte(item), id)
		must(t, err)
		nextMillisecond()
	}
	next := func(want string) {
		t.Helper()
		if got := notifiedIDs(conn.next(t)); !slices.Equal(got, []string{want}) {
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
	conn = e.restart()
	for _, want := range []string{"i2", "i3", "i0"} {
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
		ids := notifiedIDs(conn.next(t))
		if len(ids) != 1 || !want[ids[0]] {
			t.Fatalf("notified %v: not one of the items, or notified twice", ids)
		}
		delete(want, ids[0])
	}
	conn.quiet(t)
}

// TestXMPPResyncCatchesUpExactly checks a catch-up after lost events: the
// subscribers get exactly the items published or edited since the last one
// notified, even when they share its millisecond with a smaller id, even
// when that item was retracted since; a second resync sends nothing.
func TestXMPPResyncCatchesUpExactly(t *testing.T) {
	s, hub, m := offlineService(t)
	ctx := context.Background()
	feed := hub.Store.Feed("f")
	publish := func(id, item string) {
		t.Helper()
		_, err := feed.Publish(ctx, []byte(item), id)
		must(t, err)
	}
	resync := func() []string {
		t.Helper()
		s.onEvent(ctx, thoonk.Event{Type: thoonk.EventResync, Reason: thoonk.ResyncConnected}, &batch{ids: map[string][]string{}})
		return drain(t, s.notify)
	}
	at := time.UnixMilli(1_800_000_000_000)
	m.SetTime(at)
	publish("m", "0")
	_, err := s.subs.add(ctx, "f", "x@test", nil)
	must(t, err)
	_, _, err = s.startCursor(ctx, "f", "") // as subscribe does
	must(t, err)

	// lost events: two items in the millisecond of the last one notified
	publish("a", "1")
	publish("z", "2")
	if got := resync(); !slices.Equal(got, []string{"a", "z"}) {
		t.Fatalf("first resync notified %v, want a z", got)
	}
	if got := resync(); len(got) != 0 {
		t.Fatalf("second resync notified %v again", got)
	}
	// the cursor's own item retracted, another edited in the same
	// millisecond, a third published later
	must(t, feed.Retract(ctx, "z"))
	publish("a", "1 edited")
	m.SetTime(at.Add(time.Millisecond))
	publish("b", "3")
	if got := resync(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("third resync notified %v, want the edit of a, then b", got)
	}
	if got := resync(); len(got) != 0 {
		t.Fatalf("fourth resync notified %v again", got)
	}
}

// TestXMPPWriterWithSlowClock: Thoonk writers score items with their own
// clocks, so a writer whose clock is behind publishes items that Redis
// places before the last one notified. Their events still notify them,
// once each; the cursor does not move back.
func TestXMPPWriterWithSlowClock(t *testing.T) {
	s, hub, m := offlineService(t)
	ctx := context.Background()
	_, err := s.subs.add(ctx, "f", "x@test", nil)
	must(t, err)
	at := time.UnixMilli(1_800_000_000_000)
	m.SetTime(at)
	deliver := func(evs ...thoonk.Event) []string {
		t.Helper()
		b := &batch{ids: map[string][]string{}}
		for _, ev := range evs {
			s.onEvent(ctx, ev, b)
		}
		for _, feed := range b.feeds {
			s.pull(ctx, feed, b.ids[feed])
		}
		return drain(t, s.notify)
	}
	published := func(id string) thoonk.Event {
		return thoonk.Event{Type: thoonk.EventPublish, Feed: "f", ID: id}
	}
	_, err = hub.Store.Feed("f").Publish(ctx, []byte("fast"), "fast")
	must(t, err)
	if got := deliver(published("fast")); !slices.Equal(got, []string{"fast"}) {
		t.Fatalf("notified %v, want fast", got)
	}
	// the slow writer: a publish scored 2 s before the last one notified
	// (as thoonk.py on a host whose clock lags), as the schema writes it
	slow := float64(at.Add(-2 * time.Second).UnixMilli())
	must(t, hub.Store.Client().ZAdd(ctx, "feed.ids:f", redis.Z{Score: slow, Member: "slow"}).Err())
	must(t, hub.Store.Client().HSet(ctx, "feed.items:f", "slow", "late").Err())
	if got := deliver(published("slow")); !slices.Equal(got, []string{"slow"}) {
		t.Fatalf("notified %v, want the slow writer's item", got)
	}
	// both again (a repeated or late event): nothing twice
	if got := deliver(published("fast"), published("slow")); len(got) != 0 {
		t.Fatalf("notified %v again", got)
	}
}

// TestXMPPCatchUpMax checks the bound on a catch-up: with more missed items
// than catch_up_max, subscribers get the newest ones and the loss is
// logged.
func TestXMPPCatchUpMax(t *testing.T) {
	hub, _ := newHub(t)
	logs := captureLog(hub)
	ctx := context.Background()
	cfg := testConfig("pubsub.test", "127.0.0.1:1")
	cfg.CatchUpMax = 2
	s := newService(cfg, hub, newConns())
	must(t, hub.Store.Create(ctx, "f", thoonk.TypeFeed, nil))
	publish := func(id string) {
		t.Helper()
		_, err := hub.Store.Feed("f").Publish(ctx, []byte(`{}`), id)
		must(t, err)
		nextMillisecond()
	}
	publish("i0")
	_, err := s.subs.add(ctx, "f", "x@test", nil)
	must(t, err)
	_, _, err = s.startCursor(ctx, "f", "")
	must(t, err)
	for i := 1; i <= 5; i++ {
		publish("i" + strconv.Itoa(i))
	}
	s.catchUp(ctx, "test")
	if got := drain(t, s.notify); !slices.Equal(got, []string{"i4", "i5"}) {
		t.Fatalf("caught up %v, want the newest 2: i4 i5", got)
	}
	if l := logs.String(); !strings.Contains(l, "catch_up_max") || !strings.Contains(l, "skipped=3") {
		t.Fatalf("the 3 skipped items are not logged:\n%s", l)
	}
}

// TestXMPPCursorsCoalesceWrites checks the cursors' storage: changes reach
// Redis only at a flush, one value per node however many notifications;
// a new process loads them; a dropped node's cursor is deleted.
func TestXMPPCursorsCoalesceWrites(t *testing.T) {
	hub, m := newHub(t)
	ctx := context.Background()
	const key = "feedbridge.xmpp.cursors:pubsub.test"
	c := newCursors(hub.Store.Client(), "pubsub.test", hub.Log)
	before := m.CommandCount()
	nc, _ := c.start("f", emptyMark)
	for i := range 100 {
		c.delivered("f", nc, mark{Hint: strconv.Itoa(1000 + i), Seen: []seenItem{{ID: "i" + strconv.Itoa(i)}}})
	}
	if n := m.CommandCount(); n != before {
		t.Fatalf("%d Redis commands before the flush, want none", n-before)
	}
	must(t, c.flush(ctx))
	var stored mark
	if err := json.Unmarshal([]byte(m.HGet(key, "f")), &stored); err != nil || stored.Hint != "1099" {
		t.Fatalf("stored %q (%v), want the last mark", m.HGet(key, "f"), err)
	}
	again := newCursors(hub.Store.Client(), "pubsub.test", hub.Log)
	must(t, again.load(ctx))
	if _, got, ok := again.pulled("f"); !ok || got.Hint != "1099" || got.Seen[0].ID != "i99" {
		t.Fatalf("loaded %+v, %v", got, ok)
	}
	c.forget("f", func() bool { return false })
	if _, _, ok := c.pulled("f"); !ok {
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
	s, hub, m := offlineService(t)
	ctx := context.Background()
	feed := hub.Store.Feed("f")
	at := time.UnixMilli(1_800_000_000_000)
	m.SetTime(at)
	_, err := feed.Publish(ctx, []byte("old"), "old")
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
	m.SetTime(at.Add(time.Millisecond))
	_, err = feed.Publish(ctx, []byte("new"), "new")
	must(t, err)
	pulled := make(chan struct{})
	go func() {
		defer close(pulled)
		s.pull(ctx, "f", []string{"new"})
	}()
	after() // the reply went out
	<-pulled
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
		_, err := s.subs.add(ctx, feed, "x@test", nil)
		must(t, err)
		_, _, err = s.startCursor(ctx, feed, "")
		must(t, err)
		id := "item-of-" + feed
		_, err = hub.Store.Feed(feed).Publish(ctx, []byte(`{}`), id)
		must(t, err)
		want[id] = true
	}
	_, err := s.subs.add(ctx, "f", "x@test", nil)
	must(t, err)
	must(t, hub.Store.Delete(ctx, "f"))

	s.onEvent(ctx, thoonk.Event{Type: thoonk.EventResync, Reason: thoonk.ResyncConnected}, &batch{ids: map[string][]string{}})
	deleted := 0
	for {
		q, d, _, to := s.notify.take()
		if q == nil {
			break
		}
		msg := messageOf(t, d.body)
		ids := notifiedIDs(msg)
		switch gone := msg.child(nsPubsubEvent, "event").child(nsPubsubEvent, "delete"); {
		case len(ids) == 1 && want[ids[0]]:
			delete(want, ids[0])
		case gone != nil && q.feed == "f":
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
