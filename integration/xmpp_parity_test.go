package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// TestXMPPParityWithProsody runs one client script against feedbridge's
// component and Prosody's own mod_pubsub (a second component host of the
// same server) and checks that both answer alike where docs/xmpp.md says
// they do: chronological items and max_items, an empty result for unknown
// item ids, subscribing with an options form, retract notifications only
// with notify='true', access and publish models in the meta-data, and a
// node whose name holds '*'. (Where they differ on purpose, such as the
// last item on subscribe, which Prosody's nodes do not send by default,
// the script checks feedbridge only.)
func TestXMPPParityWithProsody(t *testing.T) {
	p, store := startSideBySide(t, "sub", "read, publish, retract", "")
	pub := dialXMPP(t, p, "pub", "pw-pub", "pub", nil)
	sub := dialXMPP(t, p, "sub", "pw-sub", "sub", nil)
	ps := func(inner string) string {
		return `<pubsub xmlns='http://jabber.org/protocol/pubsub'>` + inner + `</pubsub>`
	}
	ctx := context.Background()

	for _, node := range []string{"par", "odd*name"} {
		pub.mustIQ("set", xmppNativeService, ps(`<create node='`+node+`'/>`))
		if err := store.Create(ctx, node, thoonk.TypeFeed, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprint(i)
		pub.mustIQ("set", xmppNativeService, ps(`<publish node='par'><item id='`+id+`'><json xmlns='urn:xmpp:json:0'>{"i":`+id+`}</json></item></publish>`))
		if _, err := store.Feed("par").Publish(ctx, []byte(`{"i":`+id+`}`), id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct publish times
	}
	for _, svc := range []string{xmppService, xmppNativeService} {
		t.Run(svc, func(t *testing.T) {
			items := func(inner string) []string {
				return xmppPayload[xmppItemsReply](t, sub.mustIQ("get", svc, ps(inner))).ids()
			}
			if got := items(`<items node='par'/>`); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
				t.Errorf("all items: %v, want chronological", got)
			}
			if got := items(`<items node='par' max_items='2'/>`); !slices.Equal(got, []string{"4", "5"}) {
				t.Errorf("max_items=2: %v, want the newest two, oldest first", got)
			}
			if got := items(`<items node='par'><item id='nope'/></items>`); len(got) != 0 {
				t.Errorf("unknown id: %v, want an empty result", got)
			}
			info := sub.mustIQ("get", svc, `<query xmlns='http://jabber.org/protocol/disco#info' node='par'/>`)
			for _, f := range []string{"pubsub#access_model", "pubsub#publish_model"} {
				if !strings.Contains(string(info.Payload), f) {
					t.Errorf("meta-data lacks %s: %s", f, string(info.Payload))
				}
			}
			if odd := sub.mustIQ("get", svc, `<query xmlns='http://jabber.org/protocol/disco#info' node='odd*name'/>`); !strings.Contains(string(odd.Payload), "leaf") {
				t.Errorf("node odd*name: %s", string(odd.Payload))
			}
			res := sub.mustIQ("set", svc, ps(`<subscribe node='par' jid='`+sub.jid.String()+`'/><options><x xmlns='jabber:x:data' type='submit'>`+
				`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>`+
				`<field var='pubsub#include_body'><value>false</value></field></x></options>`))
			if !strings.Contains(string(res.Payload), "subscribed") {
				t.Fatalf("subscribe with options: %s", string(res.Payload))
			}
			if svc == xmppService { // Prosody's nodes default to send_last_published_item=never
				if ev := sub.next(xmppNotifyWait); ev.Event.Items == nil || len(ev.Event.Items.Items) != 1 || ev.Event.Items.Items[0].ID != "5" {
					t.Fatalf("last item on subscribe: %s", ev.Raw)
				}
			}
			pub.mustIQ("set", svc, ps(`<retract node='par'><item id='1'/></retract>`))
			xmppWaitUntil(t, "item 1 retracted", func() bool { return len(items(`<items node='par'><item id='1'/></items>`)) == 0 })
			sub.none(300 * time.Millisecond) // no notify: no notification
			pub.mustIQ("set", svc, ps(`<retract node='par' notify='true'><item id='2'/></retract>`))
			if ev := sub.next(xmppNotifyWait); ev.Event.Items == nil || len(ev.Event.Items.Retracts) != 1 || ev.Event.Items.Retracts[0].ID != "2" {
				t.Fatalf("retract with notify: %s", ev.Raw)
			}
			sub.mustIQ("set", svc, ps(`<unsubscribe node='par' jid='`+sub.jid.String()+`'/>`))
		})
	}
}
