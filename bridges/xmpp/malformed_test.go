package xmpp

import (
	"context"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// TestXMPPMalformedFeedIsolated: feeds whose keys break the schema are
// left out of disco#items (which answers), get a clear error when named,
// and the good node next to them works.
func TestXMPPMalformedFeedIsolated(t *testing.T) {
	e, conn := startEnv(t, "pubsub.test", nil)
	must(t, e.store.Create(context.Background(), "good", thoonk.TypeFeed, nil))
	_, err := e.store.Feed("good").Publish(context.Background(), []byte(`{"a":1}`), "1")
	must(t, err)
	bad := thoonktest.Malform(t, e.store.Client(), "")

	reply := conn.ask(t, `<iq type='get' id='l' from='a@test/r' to='pubsub.test'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	query := reply.child(nsDiscoItems, "query")
	if query == nil {
		t.Fatalf("disco#items: %v", reply)
	}
	var nodes []string
	for _, c := range query.children() {
		n, _ := c.attr("node")
		nodes = append(nodes, n)
	}
	if strings.Join(nodes, ",") != "feedbridge.actions,good" && strings.Join(nodes, ",") != "good" {
		t.Fatalf("nodes %q", nodes)
	}
	for _, f := range bad {
		for _, q := range []string{
			`<query xmlns='http://jabber.org/protocol/disco#info' node='` + f + `'/>`,
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='` + f + `'/></pubsub>`,
		} {
			reply := conn.ask(t, `<iq type='get' id='b' from='a@test/r' to='pubsub.test'>`+q+`</iq>`)
			cond, _ := condition(reply)
			raw, _ := reply.marshal()
			if cond != "internal-server-error" || !strings.Contains(string(raw), "malformed") || !strings.Contains(string(raw), "type='cancel'") && !strings.Contains(string(raw), `type="cancel"`) {
				t.Errorf("%s %s: %s", f, q, raw)
			}
		}
	}
	reply = conn.ask(t, `<iq type='get' id='g' from='a@test/r' to='pubsub.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='good'/></pubsub></iq>`)
	if typ, _ := reply.attr("type"); typ != "result" {
		t.Fatalf("good node: %v", reply)
	}
}
