package integration

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

const (
	xmppService    = "pubsub.localhost"
	xmppNotifyWait = 15 * time.Second
)

// xmppEnv is a real Redis, a real Prosody with the component declared and
// users alice, bob, mallory and carol, and the built bridge serving the
// component.
type xmppEnv struct {
	redis   *testenv.Redis
	prosody *testenv.Prosody
	bridge  *testenv.Bridge
	store   *thoonk.Store
}

// The test ACL: alice and bob may read, publish, edit and retract everywhere;
// mallory may only read public:* and inbox:*; carol may read public:*.
const xmppTestACL = `
  - actors: ["xmpp:alice@localhost", "xmpp:bob@localhost"]
    feeds: ["*"]
    allow: [read, publish, edit, retract]
  - actors: ["xmpp:mallory@localhost"]
    feeds: ["public:*", "inbox:*"]
    allow: [read]
  - actors: ["xmpp:carol@localhost"]
    feeds: ["public:*"]
    allow: [read]`

var xmppUsers = map[string]string{"alice": "pw-alice", "bob": "pw-bob", "mallory": "pw-mallory", "carol": "pw-carol"}

func startXMPPEnv(t testing.TB, extra string) *xmppEnv {
	t.Helper()
	comp := testenv.ProsodyComponent{Domain: xmppService, Secret: "component-secret"}
	e := &xmppEnv{redis: testenv.StartRedis(t)}
	e.prosody = testenv.StartProsody(t, testenv.ProsodyOptions{Components: []testenv.ProsodyComponent{comp}, Users: xmppUsers})
	e.store = storeFor(t, e.redis.URL)
	httpAddr := testenv.FreeAddr(t)
	cfg := xmppBridgeConfig(e.redis.URL, httpAddr, comp, e.prosody.ComponentAddr, xmppTestACL, extra)
	e.bridge = testenv.StartBridge(t, cfg, httpAddr)
	xmppWaitUp(t, e.bridge, "xmpp")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prosody log:\n%s", e.prosody.LogTail(30))
		}
	})
	return e
}

func (e *xmppEnv) client(t testing.TB, user, resource string) *xmppClient {
	return dialXMPP(t, e.prosody, user, xmppUsers[user], resource, nil)
}

func (e *xmppEnv) create(t testing.TB, feed string, typ thoonk.FeedType, cfg map[string]string) {
	t.Helper()
	if err := e.store.Create(context.Background(), feed, typ, cfg); err != nil {
		t.Fatal(err)
	}
}

// publish publishes through core, then lets the clock pass the
// millisecond (publish times have millisecond resolution), so that the
// next publish is strictly newer.
func (e *xmppEnv) publish(t testing.TB, feed, id, item string) {
	t.Helper()
	if _, err := e.store.Feed(feed).Publish(context.Background(), []byte(item), id); err != nil {
		t.Fatal(err)
	}
	for now := time.Now().UnixMilli(); time.Now().UnixMilli() <= now; {
	}
}

// waitJournaled waits until the bridge's journaler has recorded the
// item's current content (e.store writes as a foreign Thoonk writer
// would: the journal follows within milliseconds).
func (e *xmppEnv) waitJournaled(t testing.TB, feed, id string) {
	t.Helper()
	ctx := context.Background()
	xmppWaitUntil(t, "item "+id+" journaled", func() bool {
		it, err := e.store.Item(ctx, feed, id)
		if err != nil {
			return false
		}
		_, ok, err := e.store.Journaled(ctx, feed, id, it.Data)
		return err == nil && ok
	})
}

func xmppSubscribeIQ(node, j string) string {
	return fmt.Sprintf(`<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='%s' jid='%s'/></pubsub>`, node, j)
}

func xmppItemsIQ(node, inner string) string {
	return fmt.Sprintf(`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='%s'/>%s</pubsub>`, node, inner)
}

// xmppItemsReply is the answer to an items request.
type xmppItemsReply struct {
	Items struct {
		Node  string `xml:"node,attr"`
		Items []struct {
			ID    string `xml:"id,attr"`
			Inner string `xml:",innerxml"`
		} `xml:"item"`
	} `xml:"http://jabber.org/protocol/pubsub pubsub>items"`
	Set *xmppRSMSet `xml:"http://jabber.org/protocol/rsm pubsub>set"`
}

type xmppRSMSet struct {
	First *struct {
		Index int    `xml:"index,attr"`
		ID    string `xml:",chardata"`
	} `xml:"first"`
	Last  string `xml:"last"`
	Count int    `xml:"count"`
}

func (r xmppItemsReply) ids() []string {
	var out []string
	for _, it := range r.Items.Items {
		out = append(out, it.ID)
	}
	return out
}

func xmppPayload[T any](t testing.TB, r xmppAnswer) T {
	t.Helper()
	var v T
	if err := xml.Unmarshal(append(append([]byte("<r>"), r.Payload...), "</r>"...), &v); err != nil {
		t.Fatalf("parse %s: %v", r.Payload, err)
	}
	return v
}

func xmppWantError(t testing.TB, r xmppAnswer, cond, app string) {
	t.Helper()
	gotCond, gotApp := r.condition()
	if r.Type != "error" || gotCond != cond || gotApp != app {
		t.Fatalf("got %s %s/%s, want error %s/%s (%s)", r.Type, gotCond, gotApp, cond, app, r.Payload)
	}
}

func TestXMPPPubsub(t *testing.T) {
	e := startXMPPEnv(t, `
  wait: 2s
  max_item_bytes: 4096
  rate_limit: {per_second: 20, burst: 40}
actions:
  routes:
    - feeds: ["inbox:*"]
      queue: test.inbox
worker:
  queues: [feedbridge.actions]`)
	e.create(t, "public:news", thoonk.TypeFeed, map[string]string{"title": "News"})
	e.create(t, "public:todo", thoonk.TypeSorted, nil)
	e.create(t, "secret", thoonk.TypeFeed, nil)
	e.create(t, "inbox:box", thoonk.TypeFeed, nil)
	alice := e.client(t, "alice", "laptop")
	bob := e.client(t, "bob", "phone")
	mallory := e.client(t, "mallory", "x")

	t.Run("discovery", func(t *testing.T) {
		info := alice.mustIQ("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
		for _, want := range []string{`category="pubsub"`, `type="service"`, `http://jabber.org/protocol/pubsub#subscribe`,
			`http://jabber.org/protocol/pubsub#retrieve-items`, `http://jabber.org/protocol/rsm`} {
			if !strings.Contains(string(info.Payload), want) {
				t.Errorf("service disco#info lacks %s: %s", want, info.Payload)
			}
		}
		if strings.Contains(string(info.Payload), "create-nodes") {
			t.Errorf("service claims a feature it does not implement: %s", info.Payload)
		}
		type discoItems struct {
			Items []struct {
				Node string `xml:"node,attr"`
				Name string `xml:"name,attr"`
			} `xml:"http://jabber.org/protocol/disco#items query>item"`
			Set *xmppRSMSet `xml:"http://jabber.org/protocol/rsm query>set"`
		}
		nodes := func(c *xmppClient, rsm string) discoItems {
			return xmppPayload[discoItems](t, c.mustIQ("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#items'>`+rsm+`</query>`))
		}
		names := func(d discoItems) []string {
			var out []string
			for _, it := range d.Items {
				out = append(out, it.Node)
			}
			return out
		}
		if got, want := names(nodes(alice, "")), []string{"inbox:box", "public:news", "public:todo", "secret"}; !slices.Equal(got, want) {
			t.Errorf("alice sees nodes %v, want %v (job feeds and hidden feeds left out)", got, want)
		}
		if got, want := names(nodes(mallory, "")), []string{"inbox:box", "public:news", "public:todo"}; !slices.Equal(got, want) {
			t.Errorf("mallory sees nodes %v, want %v", got, want)
		}
		page := nodes(alice, `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>inbox:box</after></set>`)
		if got := names(page); !slices.Equal(got, []string{"public:news", "public:todo"}) || page.Set == nil || page.Set.Count != 4 || page.Set.First.Index != 1 {
			t.Errorf("RSM page of nodes: %v %+v", got, page.Set)
		}
		meta := alice.mustIQ("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info' node='public:news'/>`)
		for _, want := range []string{`type="leaf"`, `http://jabber.org/protocol/pubsub#meta-data`, `>News</value>`, `x-feedbridge#item_count`} {
			if !strings.Contains(string(meta.Payload), want) {
				t.Errorf("node disco#info lacks %s: %s", want, meta.Payload)
			}
		}
		xmppWantError(t, mallory.iq("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info' node='secret'/>`), "item-not-found", "")
		xmppWantError(t, alice.iq("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info' node='nope'/>`), "item-not-found", "")
		xmppWantError(t, alice.iq("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info' node='feedbridge.actions'/>`), "item-not-found", "")
	})

	t.Run("subscribe gets the last item, publishes reach every subscriber", func(t *testing.T) {
		e.publish(t, "public:news", "old", `{"n":1}`)
		e.publish(t, "public:news", "last", `{"n":2}`)
		// (subscribing before the journal has it, the item would come as
		// its live notification, without a delay stamp)
		e.waitJournaled(t, "public:news", "last")
		r := xmppPayload[struct {
			Sub struct {
				Node  string `xml:"node,attr"`
				JID   string `xml:"jid,attr"`
				SubID string `xml:"subid,attr"`
				State string `xml:"subscription,attr"`
			} `xml:"http://jabber.org/protocol/pubsub pubsub>subscription"`
		}](t, alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:news", "alice@localhost")))
		if r.Sub.State != "subscribed" || r.Sub.SubID == "" || r.Sub.JID != "alice@localhost" {
			t.Fatalf("subscription %+v", r.Sub)
		}
		ev := alice.next(xmppNotifyWait)
		if ev.Event.Items == nil || len(ev.Event.Items.Items) != 1 || ev.Event.Items.Items[0].ID != "last" || ev.Delay == nil {
			t.Fatalf("after subscribing, want the last item with a delay stamp, got %s", ev.Raw)
		}
		if ev.From != xmppService || ev.Type != "headline" {
			t.Errorf("notification from %q type %q", ev.From, ev.Type)
		}
		// bob subscribes his full JID: allowed, the bare JIDs match
		bob.mustIQ("set", xmppService, xmppSubscribeIQ("public:news", bob.jid.String()))
		if ev := bob.next(xmppNotifyWait); ev.Event.Items.Items[0].ID != "last" {
			t.Fatalf("bob's last item: %s", ev.Raw)
		}
		e.publish(t, "public:news", "fresh", `{"hello":"world"}`)
		for _, c := range []*xmppClient{alice, bob} {
			ev := c.next(xmppNotifyWait)
			it := ev.Event.Items.Items
			if ev.Event.Items.Node != "public:news" || len(it) != 1 || it[0].ID != "fresh" || it[0].JSON == nil || it[0].JSON.Text != `{"hello":"world"}` {
				t.Fatalf("%s: want item fresh as XEP-0335 JSON, got %s", c.jid, ev.Raw)
			}
			if ev.Delay != nil {
				t.Errorf("a live notification carries a delay stamp: %s", ev.Raw)
			}
		}
	})

	t.Run("edit and retract notifications", func(t *testing.T) {
		e.publish(t, "public:news", "fresh", `<entry xmlns='http://www.w3.org/2005/Atom'><title>edited &amp; new</title></entry>`)
		for _, c := range []*xmppClient{alice, bob} {
			ev := c.next(xmppNotifyWait)
			var entry struct {
				XMLName xml.Name
				Title   string `xml:"http://www.w3.org/2005/Atom title"`
			}
			err := xml.Unmarshal(ev.Event.Items.Items[0].Inner, &entry)
			if err != nil || entry.XMLName != (xml.Name{Space: "http://www.w3.org/2005/Atom", Local: "entry"}) || entry.Title != "edited & new" {
				t.Fatalf("%s: want the Atom entry embedded, got %s (%v)", c.jid, ev.Raw, err)
			}
		}
		if err := e.store.Feed("public:news").Retract(context.Background(), "fresh"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*xmppClient{alice, bob} {
			ev := c.next(xmppNotifyWait)
			if r := ev.Event.Items.Retracts; len(r) != 1 || r[0].ID != "fresh" {
				t.Fatalf("%s: want retract of fresh, got %s", c.jid, ev.Raw)
			}
		}
		// text that is not JSON nor XML, with markup that must not escape
		e.publish(t, "public:news", "txt", `</item></items></event><inject/>`)
		ev := alice.next(xmppNotifyWait)
		if it := ev.Event.Items.Items; len(it) != 1 || it[0].Text == nil || it[0].Text.Text != `</item></items></event><inject/>` {
			t.Fatalf("want the text wrapper, got %s", ev.Raw)
		}
		bob.next(xmppNotifyWait)
	})

	t.Run("XML that Go parses but Prosody refuses goes as text", func(t *testing.T) {
		// Go's decoder accepts these; embedded as XML they are not
		// namespace-well-formed, and Prosody would close the component's
		// stream (losing the notification and every stanza after it)
		for i, item := range []string{
			`<a xmlns="urn:a" x="1" x="2"/>`,
			`<a xmlns="urn:a" xmlns:p="urn:p" xmlns:q="urn:p" p:x="1" q:x="2"/>`,
			`<a xmlns="http://www.w3.org/2000/xmlns/"/>`,
			`<xml:a/>`,
			`<a xmlns="urn:a" xmlns:p="http://www.w3.org/2000/xmlns/" p:x="1"/>`,
		} {
			id := fmt.Sprintf("odd%d", i)
			e.publish(t, "public:news", id, item)
			for _, c := range []*xmppClient{alice, bob} {
				ev := c.next(xmppNotifyWait)
				if it := ev.Event.Items.Items; len(it) != 1 || it[0].ID != id || it[0].Text == nil || it[0].Text.Text != item {
					t.Fatalf("%s: want %s in the text wrapper, got %s", c.jid, item, ev.Raw)
				}
			}
		}
		if n := strings.Count(e.bridge.Log(), "xmpp: component connected"); n != 1 {
			t.Fatalf("the component connected %d times: an item broke its stream", n)
		}
	})

	t.Run("items with max_items and RSM across 200 items", func(t *testing.T) {
		e.create(t, "public:many", thoonk.TypeFeed, nil)
		for i := range 200 {
			e.publish(t, "public:many", fmt.Sprintf("i%03d", i), fmt.Sprintf(`{"i":%d}`, i))
		}
		got := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='public:many' max_items='3'/></pubsub>`))
		if !slices.Equal(got.ids(), []string{"i197", "i198", "i199"}) {
			t.Fatalf("max_items=3: %v, want the 3 most recent, oldest first", got.ids())
		}
		var all []string
		after := ""
		for page := 0; ; page++ {
			rsm := `<set xmlns='http://jabber.org/protocol/rsm'><max>60</max>`
			if after != "" {
				rsm += `<after>` + after + `</after>`
			}
			r := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService, xmppItemsIQ("public:many", rsm+`</set>`)))
			if r.Set == nil || r.Set.Count != 200 {
				t.Fatalf("page %d: set %+v", page, r.Set)
			}
			if len(r.Items.Items) == 0 {
				break
			}
			if r.Set.First.Index != len(all) || r.Set.First.ID != r.ids()[0] || r.Set.Last != r.ids()[len(r.ids())-1] {
				t.Fatalf("page %d: set %+v for %v", page, r.Set, r.ids())
			}
			all = append(all, r.ids()...)
			after = r.Set.Last
		}
		if len(all) != 200 || all[0] != "i000" || all[199] != "i199" || len(slices.Compact(slices.Clone(all))) != 200 {
			t.Fatalf("RSM pages: %d items, first %s, last %s", len(all), all[0], all[len(all)-1])
		}
		last := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			xmppItemsIQ("public:many", `<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>`)))
		if ids := last.ids(); len(ids) != 10 || ids[0] != "i190" || ids[9] != "i199" || last.Set.First.Index != 190 {
			t.Fatalf("last page: %v %+v", ids, last.Set)
		}
		byIndex := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			xmppItemsIQ("public:many", `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><index>100</index></set>`)))
		if !slices.Equal(byIndex.ids(), []string{"i100", "i101"}) {
			t.Fatalf("index 100: %v", byIndex.ids())
		}
		desc := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='public:many' max_items='2'/><order xmlns='urn:xmpp:order-by:1' by='modification' desc='true'/></pubsub>`))
		if !slices.Equal(desc.ids(), []string{"i199", "i198"}) {
			t.Fatalf("XEP-0413 descending: %v", desc.ids())
		}
		count := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			xmppItemsIQ("public:many", `<set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set>`)))
		if len(count.Items.Items) != 0 || count.Set.Count != 200 {
			t.Fatalf("count only: %+v", count)
		}
		some := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService,
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='public:many'><item id='i007'/><item id='gone'/><item id='i042'/></items></pubsub>`))
		if !slices.Equal(some.ids(), []string{"i007", "i042"}) || !strings.Contains(some.Items.Items[0].Inner, `{&#34;i&#34;:7}`) && !strings.Contains(some.Items.Items[0].Inner, `{"i":7}`) {
			t.Fatalf("items by id: %+v", some)
		}
		xmppWantError(t, alice.iq("get", xmppService, xmppItemsIQ("public:many", `<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>`)), "item-not-found", "")
		// sorted feeds page in position order
		for _, s := range []string{"a", "b", "c"} {
			if _, err := e.store.Sorted("public:todo").Append(context.Background(), []byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.store.Sorted("public:todo").Prepend(context.Background(), []byte("z")); err != nil {
			t.Fatal(err)
		}
		todo := xmppPayload[xmppItemsReply](t, alice.mustIQ("get", xmppService, xmppItemsIQ("public:todo", "")))
		if !slices.Equal(todo.ids(), []string{"4", "1", "2", "3"}) {
			t.Fatalf("sorted feed items: %v, want position order", todo.ids())
		}
	})

	t.Run("publish from XMPP becomes a job, comes back as a notification", func(t *testing.T) {
		r := xmppPayload[struct {
			Item struct {
				ID string `xml:"id,attr"`
			} `xml:"http://jabber.org/protocol/pubsub pubsub>publish>item"`
		}](t, alice.mustIQ("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='public:news'>`+
			`<item id='via-xmpp'><json xmlns='urn:xmpp:json:0'>{"from":"alice"}</json></item></publish></pubsub>`))
		if r.Item.ID != "via-xmpp" {
			t.Fatalf("publish result carries item %q", r.Item.ID)
		}
		for _, c := range []*xmppClient{alice, bob} {
			ev := c.next(xmppNotifyWait)
			it := ev.Event.Items.Items
			if len(it) != 1 || it[0].ID != "via-xmpp" || it[0].JSON == nil || it[0].JSON.Text != `{"from":"alice"}` {
				t.Fatalf("%s: want the published item back, got %s", c.jid, ev.Raw)
			}
		}
		got, err := e.store.Feed("public:news").Get(context.Background(), "via-xmpp")
		if err != nil || string(got) != `{"from":"alice"}` {
			t.Fatalf("stored item %q, %v", got, err)
		}
		// without an id, the service makes one and says which
		r = xmppPayload[struct {
			Item struct {
				ID string `xml:"id,attr"`
			} `xml:"http://jabber.org/protocol/pubsub pubsub>publish>item"`
		}](t, bob.mustIQ("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='public:news'>`+
			`<item><note xmlns='urn:example:note' lang='en'>hi</note></item></publish></pubsub>`))
		if r.Item.ID == "" {
			t.Fatal("publish without an id: no id in the result")
		}
		stored, err := e.store.Feed("public:news").Get(context.Background(), r.Item.ID)
		if err != nil || string(stored) != `<note xmlns="urn:example:note" lang="en">hi</note>` {
			t.Fatalf("stored XML item %q, %v", stored, err)
		}
		alice.next(xmppNotifyWait)
		bob.next(xmppNotifyWait)

		// a route with no worker: the job stays in its queue for us to read
		alice.mustIQ("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='inbox:box'>`+
			`<item id='q1'><json xmlns='urn:xmpp:json:0'>[1,2]</json></item></publish></pubsub>`)
		job, err := e.store.Jobs("test.inbox").Get(context.Background(), time.Second)
		if err != nil {
			t.Fatalf("no job in test.inbox: %v", err)
		}
		act, err := core.DecodeActionJob(job.Item)
		if err != nil {
			t.Fatal(err)
		}
		if act.Actor != (core.Actor{Protocol: "xmpp", ID: "alice@localhost"}) || act.Verb != "publish" || act.Feed != "inbox:box" ||
			act.ID != "q1" || string(act.Payload()) != "[1,2]" {
			t.Fatalf("job %+v", act)
		}
		if err := e.store.Jobs("test.inbox").Finish(context.Background(), job.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("denied and refused publishes", func(t *testing.T) {
		xmppWantError(t, mallory.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='inbox:box'>`+
			`<item id='m1'><json xmlns='urn:xmpp:json:0'>{}</json></item></publish></pubsub>`), "forbidden", "")
		xmppWantError(t, mallory.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='secret'>`+
			`<item><json xmlns='urn:xmpp:json:0'>{}</json></item></publish></pubsub>`), "item-not-found", "")
		if n, err := e.store.Count(context.Background(), "test.inbox"); err != nil || n != 0 {
			t.Fatalf("a denied publish left %d jobs (%v)", n, err)
		}
		xmppWantError(t, mallory.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='public:news'><item id='old'/></retract></pubsub>`),
			"forbidden", "")
		// the worker's refusals map to XEP-0060 errors
		xmppWantError(t, alice.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='public:news'><item id='no-such'/></retract></pubsub>`),
			"item-not-found", "")
		xmppWantError(t, alice.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='public:todo'>`+
			`<item id='999'><json xmlns='urn:xmpp:json:0'>{}</json></item></publish></pubsub>`), "item-not-found", "")
		// a retract that works (notify='true': XEP-0060 7.2.2.1)
		alice.mustIQ("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='public:news' notify='true'><item id='old'/></retract></pubsub>`)
		for _, c := range []*xmppClient{alice, bob} {
			if ev := c.next(xmppNotifyWait); len(ev.Event.Items.Retracts) != 1 || ev.Event.Items.Retracts[0].ID != "old" {
				t.Fatalf("%s: want retract of old, got %s", c.jid, ev.Raw)
			}
		}
		// publish-options: met, not met
		opts := func(field, value string) string {
			return `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='public:news'><item id='po'><json xmlns='urn:xmpp:json:0'>1</json></item></publish>` +
				`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
				`<field var='` + field + `'><value>` + value + `</value></field></x></publish-options></pubsub>`
		}
		xmppWantError(t, alice.iq("set", xmppService, opts("pubsub#max_items", "1")), "conflict", "precondition-not-met")
		xmppWantError(t, alice.iq("set", xmppService, opts("pubsub#access_model", "open")), "conflict", "precondition-not-met")
		alice.mustIQ("set", xmppService, opts("pubsub#persist_items", "1"))
		alice.next(xmppNotifyWait)
		bob.next(xmppNotifyWait)
	})

	t.Run("bad input gets the right error and the connection survives", func(t *testing.T) {
		pubsub := func(inner string) string {
			return `<pubsub xmlns='http://jabber.org/protocol/pubsub'>` + inner + `</pubsub>`
		}
		cases := []struct {
			typ, payload, cond, app string
		}{
			{"get", pubsub(""), "bad-request", ""},
			{"set", pubsub(`<subscribe node='public:news' jid='bob@localhost'/>`), "bad-request", "invalid-jid"},
			{"set", pubsub(`<subscribe jid='alice@localhost'/>`), "bad-request", "nodeid-required"},
			{"set", pubsub(`<subscribe node='public:news'/>`), "bad-request", "jid-required"},
			{"set", pubsub(`<publish><item><x xmlns='urn:x'/></item></publish>`), "bad-request", "nodeid-required"},
			{"set", pubsub(`<publish node='public:news'/>`), "bad-request", "item-required"},
			{"set", pubsub(`<publish node='public:news'><item id='e'/></publish>`), "bad-request", "payload-required"},
			{"set", pubsub(`<publish node='public:news'><item><a xmlns='urn:a'/><b xmlns='urn:b'/></item></publish>`), "bad-request", "invalid-payload"},
			{"set", pubsub(`<publish node='public:news'><item><json xmlns='urn:xmpp:json:0'>{not json</json></item></publish>`), "bad-request", "invalid-payload"},
			{"set", pubsub(`<publish node='public:news'><item><t xmlns='urn:t'>` + strings.Repeat("x", 5000) + `</t></item></publish>`), "not-acceptable", "payload-too-big"},
			{"get", pubsub(`<items node='public:news' max_items='-2'/>`), "bad-request", ""},
			{"get", pubsub(`<bogus/>`), "bad-request", ""},
			{"set", pubsub(`<create node='new'/>`), "feature-not-implemented", "unsupported"},
			{"set", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='public:news'/></pubsub>`, "feature-not-implemented", "unsupported"},
			{"get", `<query xmlns='jabber:iq:version'/>`, "service-unavailable", ""},
			{"set", pubsub(`<unsubscribe node='public:todo' jid='alice@localhost'/>`), "unexpected-request", "not-subscribed"},
			{"set", pubsub(`<unsubscribe node='public:news' jid='bob@localhost'/>`), "forbidden", ""},
			{"get", pubsub(`<subscribe node='public:news' jid='alice@localhost'/>`), "bad-request", ""},
		}
		for _, c := range cases {
			r := alice.iq(c.typ, xmppService, c.payload)
			if cond, app := r.condition(); r.Type != "error" || cond != c.cond || app != c.app {
				t.Errorf("%s %s: got %s %s/%s, want %s/%s", c.typ, c.payload, r.Type, cond, app, c.cond, c.app)
			}
		}
		// still connected, still served
		alice.mustIQ("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	})

	t.Run("subscriptions and unsubscribe", func(t *testing.T) {
		type subs struct {
			Subs []struct {
				Node  string `xml:"node,attr"`
				JID   string `xml:"jid,attr"`
				SubID string `xml:"subid,attr"`
			} `xml:"http://jabber.org/protocol/pubsub pubsub>subscriptions>subscription"`
		}
		got := xmppPayload[subs](t, bob.mustIQ("get", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions/></pubsub>`))
		if len(got.Subs) != 1 || got.Subs[0].Node != "public:news" || got.Subs[0].JID != bob.jid.String() {
			t.Fatalf("bob's subscriptions: %+v", got.Subs)
		}
		xmppWantError(t, bob.iq("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><unsubscribe node='public:news' jid='`+bob.jid.String()+`' subid='wrong'/></pubsub>`),
			"not-acceptable", "invalid-subid")
		bob.mustIQ("set", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><unsubscribe node='public:news' jid='`+bob.jid.String()+`'/></pubsub>`)
		e.publish(t, "public:news", "after-unsub", `{}`)
		if ev := alice.next(xmppNotifyWait); ev.Event.Items.Items[0].ID != "after-unsub" {
			t.Fatalf("alice: %s", ev.Raw)
		}
		bob.none(300 * time.Millisecond)
	})

	t.Run("feed deleted", func(t *testing.T) {
		if err := e.store.Delete(context.Background(), "public:news"); err != nil {
			t.Fatal(err)
		}
		if ev := alice.next(xmppNotifyWait); ev.Event.Delete == nil || ev.Event.Delete.Node != "public:news" {
			t.Fatalf("want a delete notification, got %s", ev.Raw)
		}
		got := xmppPayload[struct {
			Subs []struct{} `xml:"http://jabber.org/protocol/pubsub pubsub>subscriptions>subscription"`
		}](t, alice.mustIQ("get", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions/></pubsub>`))
		if len(got.Subs) != 0 {
			t.Fatalf("subscriptions of a deleted feed remain: %d", len(got.Subs))
		}
	})

	t.Run("a flood from one JID is rate limited", func(t *testing.T) {
		carol := e.client(t, "carol", "flood")
		limited := 0
		for range 150 {
			r := carol.iq("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
			if cond, _ := r.condition(); cond == "resource-constraint" {
				limited++
			} else if r.Type != "result" {
				t.Fatalf("flood: unexpected answer %s %s", r.Type, r.Payload)
			}
		}
		if limited == 0 {
			t.Fatal("150 requests in a row from one JID were never limited (20/s, burst 40)")
		}
		// others are not affected
		alice.mustIQ("get", xmppService, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	})
}

func TestXMPPProsodyRestart(t *testing.T) {
	e := startXMPPEnv(t, "")
	e.create(t, "public:live", thoonk.TypeFeed, nil)
	alice := e.client(t, "alice", "a")
	alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:live", "alice@localhost"))

	e.prosody.Restart()
	xmppWaitUntil(t, "the component to reconnect", func() bool {
		return strings.Count(e.bridge.Log(), "xmpp: component connected") >= 2
	})
	alice = e.client(t, "alice", "a2")
	e.publish(t, "public:live", "after-restart", `{"ok":true}`)
	if ev := alice.next(xmppNotifyWait); ev.Event.Items.Items[0].ID != "after-restart" {
		t.Fatalf("after a Prosody restart: %s", ev.Raw)
	}
}

func TestXMPPBridgeRestart(t *testing.T) {
	e := startXMPPEnv(t, "")
	e.create(t, "public:live", thoonk.TypeFeed, nil)
	alice := e.client(t, "alice", "a")
	alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:live", "alice@localhost"))

	e.bridge.Restart()
	xmppWaitUp(t, e.bridge, "xmpp")
	got := alice.mustIQ("get", xmppService, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscriptions node='public:live'/></pubsub>`)
	if !strings.Contains(string(got.Payload), `jid="alice@localhost"`) {
		t.Fatalf("subscription lost across a bridge restart: %s", got.Payload)
	}
	e.publish(t, "public:live", "after-restart", `{"ok":true}`)
	if ev := alice.next(xmppNotifyWait); ev.Event.Items.Items[0].ID != "after-restart" {
		t.Fatalf("after a bridge restart: %s", ev.Raw)
	}
}

// xmppNotified returns the item ids of a notification.
func xmppNotified(ev xmppEvent) []string {
	var ids []string
	if ev.Event != nil && ev.Event.Items != nil {
		for _, it := range ev.Event.Items.Items {
			ids = append(ids, it.ID)
		}
	}
	return ids
}

// xmppExpect waits for notifications of the given items, in that order.
func xmppExpect(t *testing.T, c *xmppClient, ids ...string) {
	t.Helper()
	for _, want := range ids {
		if got := xmppNotified(c.next(xmppNotifyWait)); !slices.Equal(got, []string{want}) {
			t.Fatalf("%s: notified %v, want %s", c.jid, got, want)
		}
	}
}

// TestXMPPBridgeRestartCatchesUp checks that nothing is lost across a
// bridge restart: the items published while the bridge was stopped reach
// the subscriber once it is back, oldest first, each exactly once, and
// live notifications go on.
func TestXMPPBridgeRestartCatchesUp(t *testing.T) {
	e := startXMPPEnv(t, "")
	e.create(t, "public:live", thoonk.TypeFeed, nil)
	alice := e.client(t, "alice", "a")
	e.publish(t, "public:live", "before", `{"n":0}`)
	alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:live", "alice@localhost"))
	xmppExpect(t, alice, "before") // the last item
	e.publish(t, "public:live", "live", `{"n":1}`)
	xmppExpect(t, alice, "live")

	e.bridge.Stop()
	for i, id := range []string{"missed1", "missed2", "missed3"} {
		e.publish(t, "public:live", id, fmt.Sprintf(`{"missed":%d}`, i))
	}
	e.bridge.Start()
	xmppWaitUp(t, e.bridge, "xmpp")
	xmppExpect(t, alice, "missed1", "missed2", "missed3")
	alice.none(500 * time.Millisecond)
	e.publish(t, "public:live", "after", `{"n":2}`)
	xmppExpect(t, alice, "after")
	alice.none(300 * time.Millisecond)
}

// TestXMPPRedisReconnectCatchesUp checks the catch-up after lost events on
// a real Redis: items written while no announcement reached the bridge
// (written here without the schema's PUBLISH, as if the bridge's pubsub
// connection had been down) are notified once the bridge's pubsub
// connection is re-established, exactly once; one shares the millisecond
// of the last item notified.
func TestXMPPRedisReconnectCatchesUp(t *testing.T) {
	e := startXMPPEnv(t, "")
	e.create(t, "public:live", thoonk.TypeFeed, nil)
	alice := e.client(t, "alice", "a")
	alice.mustIQ("set", xmppService, xmppSubscribeIQ("public:live", "alice@localhost"))
	e.publish(t, "public:live", "seen", `{"n":0}`)
	xmppExpect(t, alice, "seen")

	ctx := context.Background()
	rdb := e.store.Client()
	seen, err := rdb.ZScore(ctx, "feed.ids:public:live", "seen").Result()
	if err != nil {
		t.Fatal(err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for id, score := range map[string]float64{"a-same-ms": seen, "later": float64(now.UnixMilli() + 1)} {
		if err := rdb.ZAdd(ctx, "feed.ids:public:live", redis.Z{Score: score, Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, "feed.items:public:live", id, `{"unannounced":true}`).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	xmppExpect(t, alice, "a-same-ms", "later")
	alice.none(500 * time.Millisecond)
}
