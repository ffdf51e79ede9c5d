package xmpp

import (
	"context"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

const psNS = "http://jabber.org/protocol/pubsub"

// iqGet and iqSet wrap a pubsub payload in an IQ from a@test/r.
func iqGet(id, payload string) string {
	return `<iq type='get' id='` + id + `' from='a@test/r' to='pubsub.test'><pubsub xmlns='` + psNS + `'>` + payload + `</pubsub></iq>`
}

func iqSet(id, payload string) string {
	return `<iq type='set' id='` + id + `' from='a@test/r' to='pubsub.test'><pubsub xmlns='` + psNS + `'>` + payload + `</pubsub></iq>`
}

// itemIDs returns the ids of an items reply, in order.
func itemIDs(t *testing.T, reply *element) []string {
	t.Helper()
	ps := reply.child(psNS, "pubsub")
	if ps == nil {
		raw, _ := reply.marshal()
		t.Fatalf("no pubsub result: %s", raw)
	}
	var ids []string
	for _, it := range ps.child(psNS, "items").children() {
		id, _ := it.attr("id")
		ids = append(ids, id)
	}
	return ids
}

// TestXMPPItemsChronological: items come oldest first within every reply;
// max_items gives the newest N; RSM pages walk chronological order (index
// 0 the oldest, an empty <before/> the newest page); XEP-0413 ordering by
// modification, descending, gives the newest first; by creation is not
// offered (Thoonk keeps no creation time); unknown item ids are left out
// and none found is an empty result.
func TestXMPPItemsChronological(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "n", thoonk.TypeFeed, nil))
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		_, err := e.store.Feed("n").Publish(ctx, []byte(`{"id":"`+id+`"}`), id)
		must(t, err)
		nextMillisecond()
	}
	for _, c := range []struct{ query, want string }{
		{`<items node='n'/>`, "a b c d e"},
		{`<items node='n' max_items='2'/>`, "d e"},
		{`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>`, "a b"},
		{`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>b</after></set>`, "c d"},
		{`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>`, "d e"},
		{`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>d</before></set>`, "b c"},
		{`<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><index>3</index></set>`, "d e"},
		{`<items node='n' max_items='2'/><order xmlns='urn:xmpp:order-by:1' by='modification' desc='true'/>`, "e d"},
		{`<items node='n'/><order xmlns='urn:xmpp:order-by:1' by='modification'/>`, "a b c d e"},
		{`<items node='n'><item id='c'/><item id='nope'/><item id='a'/></items>`, "c a"},
		{`<items node='n'><item id='nope'/></items>`, ""},
	} {
		if got := strings.Join(itemIDs(t, conn.ask(t, iqGet("i", c.query))), " "); got != c.want {
			t.Errorf("%s: got %q, want %q", c.query, got, c.want)
		}
	}
	reply := conn.ask(t, iqGet("p", `<items node='n'/><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>b</after></set>`))
	set := reply.child(psNS, "pubsub").child(nsRSM, "set")
	if first := set.child(nsRSM, "first"); first == nil || first.text() != "c" || func() string { v, _ := first.attr("index"); return v }() != "2" {
		raw, _ := set.marshal()
		t.Errorf("RSM set %s, want first c at index 2", raw)
	}
	if cond, _ := condition(conn.ask(t, iqGet("o", `<items node='n'/><order xmlns='urn:xmpp:order-by:1' by='creation'/>`))); cond != "feature-not-implemented" {
		t.Errorf("order by creation: %s", cond)
	}
}

// TestXMPPSubscribeWithOptions: a subscribe with an options form
// subscribes, applies pubsub#deliver, and answers the options in force;
// a value the service cannot apply is bad-request + invalid-options and
// stores nothing; the options can be read and changed later.
func TestXMPPSubscribeWithOptions(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "n", thoonk.TypeFeed, nil))
	form := func(fields string) string {
		return `<options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>` + fields + `</x></options>`
	}
	reply := conn.ask(t, iqSet("s1", `<subscribe node='n' jid='a@test/r'/>`+form(
		`<field var='pubsub#deliver'><value>0</value></field><field var='pubsub#digest'><value>0</value></field>`+
			`<field var='pubsub#show-values'><value>chat</value></field>`)))
	raw, _ := reply.marshal()
	if typ, _ := reply.attr("type"); typ != "result" || !strings.Contains(string(raw), "subscribed") ||
		!strings.Contains(string(raw), `var="pubsub#deliver" type="boolean"><value>false</value>`) || strings.Contains(string(raw), "show-values") {
		t.Fatalf("subscribe with options: %s", raw)
	}
	_, err := e.store.Feed("n").Publish(ctx, []byte(`{"x":1}`), "quiet")
	must(t, err)
	conn.quiet(t) // deliver false: no notification
	// turn delivery on again
	reply = conn.ask(t, iqSet("o1", `<options node='n' jid='a@test/r'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field><field var='pubsub#deliver'><value>true</value></field></x></options>`))
	if typ, _ := reply.attr("type"); typ != "result" {
		raw, _ := reply.marshal()
		t.Fatalf("set options: %s", raw)
	}
	reply = conn.ask(t, iqGet("o2", `<options node='n' jid='a@test/r'/>`))
	if raw, _ := reply.marshal(); !strings.Contains(string(raw), `var="pubsub#deliver" type="boolean"><value>true</value>`) {
		t.Fatalf("get options: %s", raw)
	}
	_, err = e.store.Feed("n").Publish(ctx, []byte(`{"x":2}`), "loud")
	must(t, err)
	// (the node had no other subscriber: its catch-up delivers what came
	// while delivery was off, as after a reconnect; docs/xmpp.md)
	for ids := notifiedIDs(conn.next(t)); len(ids) != 1 || ids[0] != "loud"; ids = notifiedIDs(conn.next(t)) {
		if len(ids) != 1 || ids[0] != "quiet" {
			t.Fatalf("notified %v", ids)
		}
	}
	// an option it cannot apply: refused, nothing stored
	reply = conn.ask(t, iqSet("s2", `<subscribe node='n' jid='a@test/other'/>`+form(`<field var='pubsub#digest'><value>true</value></field>`)))
	if cond, app := condition(reply); cond != "bad-request" || app != "invalid-options" {
		t.Fatalf("digest true: %s %s", cond, app)
	}
	if _, ok := e.bridge.current.Load().subs.get("n", "a@test/other"); ok {
		t.Fatal("a refused subscribe stored a subscription")
	}
}

// TestXMPPRetractNotify: a retract requested through XMPP notifies the
// subscribers only with notify='true' (XEP-0060 7.2.2.1); retractions by
// other means always notify.
func TestXMPPRetractNotify(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = core.NewWorker(e.store, core.WorkerOptions{Queues: []string{"feedbridge.actions"}, Concurrency: 1, ACL: e.hub.ACL, Log: e.hub.Log}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	must(t, e.store.Create(ctx, "n", thoonk.TypeFeed, nil))
	for _, id := range []string{"1", "2", "3"} {
		_, err := e.store.Feed("n").Publish(ctx, []byte("x"), id)
		must(t, err)
	}
	if typ, _ := conn.ask(t, iqSet("s", `<subscribe node='n' jid='a@test/r'/>`)).attr("type"); typ != "result" {
		t.Fatal("subscribe failed")
	}
	conn.next(t) // the last item
	conn.send(t, iqSet("r1", `<retract node='n'><item id='1'/></retract>`))
	conn.next(t) // the IQ result
	waitFor(t, "item 1 retracted", func() bool { _, err := e.store.Item(ctx, "n", "1"); return err != nil })
	conn.quiet(t)
	conn.send(t, iqSet("r2", `<retract node='n' notify='true'><item id='2'/></retract>`))
	got := map[string]bool{}
	for range 2 { // the IQ result and the notification, in any order
		st := conn.next(t)
		if ev := st.child(nsPubsubEvent, "event"); ev != nil {
			if r := ev.child(nsPubsubEvent, "items").child(nsPubsubEvent, "retract"); r != nil {
				id, _ := r.attr("id")
				got[id] = true
			}
		}
	}
	if !got["2"] {
		t.Fatalf("no retract notification for 2")
	}
	must(t, e.store.Feed("n").Retract(ctx, "3"))
	if ev := conn.next(t).child(nsPubsubEvent, "event"); ev == nil {
		t.Fatal("a retraction through core was not notified")
	}
}

// TestXMPPNodeMetadataAndNames: a node's meta-data carries the access and
// publish models the ACL gives, and a feed whose name holds '*' is a node.
func TestXMPPNodeMetadataAndNames(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	ctx := context.Background()
	must(t, e.store.Create(ctx, "odd*name", thoonk.TypeFeed, nil))
	reply := conn.ask(t, `<iq type='get' id='m' from='a@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#info' node='odd*name'/></iq>`)
	raw, _ := reply.marshal()
	for _, want := range []string{`var="pubsub#access_model" type="text-single"><value>open</value>`, `var="pubsub#publish_model" type="text-single"><value>open</value>`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("meta-data lacks %s: %s", want, raw)
		}
	}
	e.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"xmpp:a@test"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	raw, _ = conn.ask(t, `<iq type='get' id='m2' from='a@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#info' node='odd*name'/></iq>`).marshal()
	for _, want := range []string{`<value>whitelist</value>`, `<value>publishers</value>`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("meta-data under a closed ACL lacks %s: %s", want, raw)
		}
	}
}
