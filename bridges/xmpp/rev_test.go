package xmpp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// publishWithRev is a publish of item id on node n whose publish-options
// carry x-feedbridge#rev.
func publishWithRev(reqID, id, rev, text string) string {
	return iqSet(reqID, `<publish node='n'><item id='`+id+`'><entry xmlns='http://www.w3.org/2005/Atom'><title>`+text+`</title></entry></item></publish>`+
		`<publish-options><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var='x-feedbridge#rev'><value>`+rev+`</value></field></x></publish-options>`)
}

// itemRev returns the rev attribute of the first item of a reply or
// notification.
func itemRev(t *testing.T, st *element, parentNS string) string {
	t.Helper()
	var items *element
	if ps := st.child(nsPubsub, "pubsub"); ps != nil {
		items = ps.child(nsPubsub, "items")
	} else if ev := st.child(nsPubsubEvent, "event"); ev != nil {
		items = ev.child(nsPubsubEvent, "items")
	}
	if items == nil || items.child(parentNS, "item") == nil {
		raw, _ := st.marshal()
		t.Fatalf("no item in %s", raw)
	}
	rev, _ := attrNS(items.child(parentNS, "item"), nsRev, "rev")
	return rev
}

// TestXMPPConditionalPublish: items carry the revision of their last
// change (retrieved and notified); a publish whose x-feedbridge#rev is no
// longer the item's is refused with conflict + precondition-not-met and
// changes nothing; with the current revision it replaces the item; a
// change landing between the request and the worker's apply is refused by
// the worker (the revision is checked again, atomically).
func TestXMPPConditionalPublish(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", func(c *Config) { c.Wait = 5 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"xmpp:*"}, Feeds: []string{"*"}, Allow: []string{"read", "publish", "edit"}})
	must(t, e.store.Create(ctx, "n", thoonk.TypeFeed, nil))
	_, err := e.store.Feed("n").Publish(ctx, []byte(`{"v":1}`), "x")
	must(t, err)
	stored, err := e.store.Item(ctx, "n", "x")
	must(t, err)
	if got := itemRev(t, conn.ask(t, iqGet("g1", `<items node='n'><item id='x'/></items>`)), nsPubsub); got != stored.Rev || got == "" {
		t.Fatalf("retrieved rev %q, want %q", got, stored.Rev)
	}
	if got := itemRev(t, conn.ask(t, iqGet("g2", `<items node='n'/>`)), nsPubsub); got != stored.Rev {
		t.Fatalf("paged rev %q, want %q", got, stored.Rev)
	}
	jobs := func() int64 {
		n, err := e.store.Count(ctx, "feedbridge.actions")
		must(t, err)
		return n
	}

	// malformed, or without an item id: bad-request
	for i, req := range []string{publishWithRev("b1", "x", "yesterday", "t"), publishWithRev("b2", "", stored.Rev, "t")} {
		if cond, _ := condition(conn.ask(t, req)); cond != "bad-request" {
			t.Fatalf("request %d: condition %q, want bad-request", i, cond)
		}
	}
	// stale: refused at once, no job
	_, err = e.store.Feed("n").Publish(ctx, []byte(`{"v":2}`), "x")
	must(t, err)
	reply := conn.ask(t, publishWithRev("p1", "x", stored.Rev, "stale"))
	if cond, app := condition(reply); cond != "conflict" || app != "precondition-not-met" {
		t.Fatalf("stale rev: %s %s, want conflict + precondition-not-met", cond, app)
	}
	if text := reply.child(nsComponent, "error").child(nsStanzas, "text"); text == nil || !strings.Contains(text.text(), "revision is now") {
		t.Fatalf("the error does not name the current revision: %v", text)
	}
	if n := jobs(); n != 0 {
		t.Fatalf("a refused publish stored %d jobs", n)
	}

	// current, but a change lands before the worker applies it: the
	// worker refuses, and the waiting reply says so
	now, err := e.store.Item(ctx, "n", "x")
	must(t, err)
	conn.send(t, publishWithRev("p2", "x", now.Rev, "late"))
	waitFor(t, "the job stored", func() bool { return jobs() == 1 })
	_, err = e.store.Feed("n").Publish(ctx, []byte(`{"v":3}`), "x")
	must(t, err)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		_ = core.NewWorker(e.store, core.WorkerOptions{Queues: []string{"feedbridge.actions"}, Concurrency: 1, ACL: e.hub.ACL, Log: e.hub.Log}).Run(ctx)
	}()
	if cond, app := condition(conn.next(t)); cond != "conflict" || app != "precondition-not-met" {
		t.Fatalf("changed before the worker applied it: %s %s, want conflict + precondition-not-met", cond, app)
	}
	if it, _ := e.store.Item(ctx, "n", "x"); string(it.Data) != `{"v":3}` {
		t.Fatalf("item %s after a refused change", it.Data)
	}

	// current: replaced
	now, err = e.store.Item(ctx, "n", "x")
	must(t, err)
	if r := conn.ask(t, publishWithRev("p3", "x", now.Rev, "fresh")); func() string { typ, _ := r.attr("type"); return typ }() != "result" {
		raw, _ := r.marshal()
		t.Fatalf("publish with the current rev: %s", raw)
	}
	if it, _ := e.store.Item(ctx, "n", "x"); !strings.Contains(string(it.Data), "fresh") {
		t.Fatalf("item %s, want the conditional publish's", it.Data)
	}
}
