package xmpp

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// TestXMPPXEP0060Examples plays the fixtures in testdata/xep0060 in order
// against the running component: each <in> stanza is sent as the server
// would forward it, each <out> is the stanza the component must send
// next, and each <store> changes the feeds through core. The requests
// and expected answers are XEP-0060's own examples.
func TestXMPPXEP0060Examples(t *testing.T) {
	e, conn := startEnv(t, "pubsub.shakespeare.lit", nil)
	ctx := context.Background()
	if err := e.store.Create(ctx, "princely_musings", thoonk.TypeFeed,
		map[string]string{"title": "Princely Musings (Atom)", "description": "Updates for Hamlet"}); err != nil {
		t.Fatal(err)
	}
	for _, it := range []struct{ id, title, summary string }{
		{"368866411b877c30064a5f62b917cffe", "The Uses of This World", "O, that this too too solid flesh would melt"},
		{"3300659945416e274474e469a1f0154c", "Ghost", "Angels and ministers of grace defend us!"},
		{"4e30f35051b7b8b42abe083742187228", "Alone", "Now I am alone."},
		{"ae890ac52d0df67ed7cfdf51b644e901", "Soliloquy", "To be, or not to be: that is the question."},
	} {
		entry := "<entry xmlns='http://www.w3.org/2005/Atom'><title>" + it.title + "</title><summary>" + it.summary + "</summary></entry>"
		if _, err := e.store.Feed("princely_musings").Publish(ctx, []byte(entry), it.id); err != nil {
			t.Fatal(err)
		}
		nextMillisecond()
	}
	files, err := filepath.Glob("testdata/xep0060/*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fx, err := parseXMLElement(data, limits{bytes: 1 << 20, depth: 64, elements: 1 << 16})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, step := range fx.children() {
			switch step.Name.Local {
			case "in":
				raw, err := step.children()[0].marshal()
				if err != nil {
					t.Fatal(err)
				}
				conn.send(t, string(raw))
			case "out":
				got := conn.next(t)
				if err := match(step.children()[0], got); err != nil {
					raw, _ := got.marshal()
					t.Fatalf("%s: %v\ngot %s", filepath.Base(f), err, raw)
				}
			case "store":
				feed, _ := step.attr("feed")
				id, _ := step.attr("id")
				op, _ := step.attr("op")
				switch op {
				case "publish":
					payload, err := step.children()[0].marshal()
					if err == nil {
						_, err = e.store.Feed(feed).Publish(ctx, payload, id)
					}
					nextMillisecond()
					must(t, err)
				case "retract":
					must(t, e.store.Feed(feed).Retract(ctx, id))
				case "delete":
					must(t, e.store.Delete(ctx, feed))
				}
			}
		}
	}
	select {
	case extra := <-conn.stanzas:
		raw, _ := extra.marshal()
		t.Fatalf("unexpected stanza after the fixtures: %s", raw)
	case <-time.After(50 * time.Millisecond):
	}
}

// nextMillisecond waits for the clock to pass the millisecond, so that
// the next publish gets a later time (publish times are milliseconds).
func nextMillisecond() {
	for now := time.Now().UnixMilli(); time.Now().UnixMilli() <= now; {
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
