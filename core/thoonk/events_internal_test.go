package thoonk

import (
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		channel, payload string
		want             Event
		ok               bool
	}{
		{"feed.publish:a:b", "1\x00item\x00with nul", Event{Type: EventPublish, Feed: "a:b", ID: "1", Item: []byte("item\x00with nul")}, true},
		{"feed.edit:f", "1\x00", Event{Type: EventEdit, Feed: "f", ID: "1", Item: []byte{}}, true},
		{"feed.retract:f", "1", Event{Type: EventRetract, Feed: "f", ID: "1"}, true},
		{"feed.position:f", "3\x00:1", Event{Type: EventPosition, Feed: "f", ID: "3", Position: ":1"}, true},
		{"job.finish:q", "j\x00{}", Event{Type: EventJobFinish, Feed: "q", ID: "j", Item: []byte("{}")}, true},
		{"newfeed", "f\x00inst", Event{Type: EventCreate, Feed: "f", Instance: "inst"}, true},
		{"delfeed", "f\x00inst", Event{Type: EventDelete, Feed: "f", Instance: "inst"}, true},
		{"conffeed", "f", Event{Type: EventConfig, Feed: "f"}, true},
		{"feed.publish:f", "no separator", Event{}, false},
		{"feed.publish:", "1\x00x", Event{}, false},
		{"feed.retract:f", "", Event{}, false},
		{"other", "x", Event{}, false},
		{"newfeed", "", Event{}, false},
	} {
		got, ok := parseMessage(tc.channel, tc.payload)
		if ok != tc.ok || got.Type != tc.want.Type || got.Feed != tc.want.Feed || got.ID != tc.want.ID ||
			string(got.Item) != string(tc.want.Item) || got.Position != tc.want.Position || got.Instance != tc.want.Instance {
			t.Errorf("parseMessage(%q, %q) = %+v, %v; want %+v, %v", tc.channel, tc.payload, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, s := range [][2]string{{"feed.publish:f", "1\x00x"}, {"feed.retract:f", "1"}, {"newfeed", "f\x00i"}, {"job.finish:q", "\x00"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, channel, payload string) {
		ev, ok := parseMessage(channel, payload)
		if !ok {
			return
		}
		if ev.Feed == "" || ev.Type == 0 || ev.Type == EventResync {
			t.Fatalf("accepted %q %q as %+v", channel, payload, ev)
		}
		if ev.ID != "" && strings.Contains(ev.ID, "\x00") {
			t.Fatalf("id with NUL from %q", payload)
		}
		// what the schema's writers produce parses back to the same fields
		if ev.Type == EventPublish && ev.ID != "" {
			again, ok := parseMessage(channel, ev.ID+"\x00"+string(ev.Item))
			if !ok || again.ID != ev.ID || string(again.Item) != string(ev.Item) {
				t.Fatalf("round trip changed %+v", ev)
			}
		}
	})
}
