package irc

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want command
		err  string
	}{
		{"help", command{name: "help"}, ""},
		{"FEEDS", command{name: "feeds"}, ""},
		{"items news", command{name: "items", feed: "news", n: 3}, ""},
		{"items news 5", command{name: "items", feed: "news", n: 5}, ""},
		{"items news 99", command{}, "N from 1 to 5"},
		{"items news x", command{}, "usage: items"},
		{"items", command{}, "usage: items"},
		{"publish news  Hello,  world ", command{name: "publish", feed: "news", text: "Hello,  world"}, ""},
		{"publish news", command{}, "usage: publish FEED TEXT"},
		{"publish news \x02bold\x02 \r\nJOIN #x", command{name: "publish", feed: "news", text: "bold  JOIN #x"}, ""},
		{"edit news 42 new text", command{name: "edit", feed: "news", id: "42", text: "new text"}, ""},
		{"edit news 42", command{}, "usage: edit"},
		{"retract news 42", command{name: "retract", feed: "news", id: "42"}, ""},
		{"retract news 42 extra", command{}, "usage: retract"},
		{"ship 42 now", command{name: "ship", args: []string{"42", "now"}}, ""},
	} {
		got, err := parseCommand(tc.in, 5)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseCommand(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.name != tc.want.name || got.feed != tc.want.feed || got.id != tc.want.id ||
			got.text != tc.want.text || got.n != tc.want.n || strings.Join(got.args, " ") != strings.Join(tc.want.args, " ") {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestCommandText(t *testing.T) {
	for _, tc := range []struct {
		text    string
		private bool
		want    string
		ok      bool
	}{
		{"!help", false, "help", true},
		{"  !items news  ", false, "items news", true},
		{"hello everyone", false, "", false},
		{"!", false, "", false},
		{"help", true, "help", true},
		{"!help", true, "help", true},
		{"   ", true, "", false},
	} {
		got, ok := commandText(tc.text, "!", tc.private)
		if got != tc.want || ok != tc.ok {
			t.Errorf("commandText(%q, %v) = %q, %v", tc.text, tc.private, got, ok)
		}
	}
}

// FuzzParseCommand: any message parses or is refused with a usage; what
// a command carries on is clean one-line UTF-8 text.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"publish news hi", "edit a b c", "retract a b", "items x 3", "x\r\ny", "publish n \xff\x00", "ship 1 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := parseCommand(in, 5)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "usage: ") {
				t.Fatalf("error %q is not a usage", err)
			}
			return
		}
		for _, s := range append([]string{c.name, c.feed, c.id, c.text}, c.args...) {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("%q carries controls or invalid UTF-8: %+v", in, c)
			}
		}
		if c.name == "items" && (c.n < 1 || c.n > 5) {
			t.Fatalf("items N = %d", c.n)
		}
	})
}

func TestUserLimits(t *testing.T) {
	u := newUserLimits(RateConfig{Interval: time.Hour, Burst: 2})
	for i, want := range []struct{ ok, warn bool }{{true, false}, {true, false}, {false, true}, {false, false}} {
		if ok, warn := u.allow("irc:alice"); ok != want.ok || warn != want.warn {
			t.Errorf("command %d: allowed %v warn %v, want %v %v", i+1, ok, warn, want.ok, want.warn)
		}
	}
	if ok, _ := u.allow("irc:bob"); !ok {
		t.Error("one person's limit stopped another")
	}
	for i := range maxUsers + 10 {
		u.allow(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(u.users) > maxUsers {
		t.Errorf("%d people tracked, over the bound of %d", len(u.users), maxUsers)
	}
}
