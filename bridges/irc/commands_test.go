package irc

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/feedbridge/feedbridge/core"
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

// TestWhoisOnlyWhenNeeded: the bot asks WHOIS only to prove the identity
// a command needs: not when the server sends account tags (a message
// without one is from someone not logged in), and not for a command
// that is not the bot's (another bot's, in a channel).
func TestWhoisOnlyWhenNeeded(t *testing.T) {
	t.Run("account-tag", func(t *testing.T) {
		f := newFakeServer(t)
		b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n")
		registerWithAccountTag(t, b, f)
		f.send(":al!~a@host PRIVMSG feedbot :feeds")
		if got := f.next(); got != "NOTICE al :no feeds you may read" {
			t.Errorf("the bot sent %q, want the answer without a WHOIS", got)
		}
	})
	t.Run("not the bot's command", func(t *testing.T) {
		f := newFakeServer(t)
		b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n  channels: [{name: \"#news\", feeds: [news]}]\n")
		runSession(t, b, f)
		startWorkers(t, b)
		f.expect("USER")
		f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
		f.expect("JOIN #news")
		f.send(":al!~a@host PRIVMSG #news :!deploy now", ":bob!~b@host PRIVMSG feedbot :feeds")
		for {
			switch got := f.next(); {
			case got == "WHOIS bob": // needed: feeds depends on who asks
				f.send(":srv 318 feedbot bob :End of WHOIS list")
			case strings.HasPrefix(got, "NOTICE bob"):
				return
			default:
				t.Fatalf("the bot sent %q; want only WHOIS bob, then the answer", got)
			}
		}
	})
}

// TestRateLimitFollowsPerson: the per-person command limit is kept by
// user@host, so a new nick does not start a new allowance.
func TestRateLimitFollowsPerson(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n  commands: {rate: {interval: 1h, burst: 2}}\n")
	runSession(t, b, f)
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
	f.send(":al!~a@home PRIVMSG feedbot :help", ":al!~a@home PRIVMSG feedbot :help", ":al!~a@home PRIVMSG feedbot :help")
	if got := f.expect("NOTICE"); got != "NOTICE al :slow down: too many commands; try again in a few seconds" {
		t.Errorf("third command answered %q, want a slow down", got)
	}
	f.send(":al!~a@home NICK :al2", ":al2!~a@home PRIVMSG feedbot :help", ":bob!~b@work PRIVMSG feedbot :help")
	// lines are handled in order: the third command taken is bob's only
	// if al2's was refused
	for i, want := range []string{"al", "al", "bob"} {
		select {
		case r := <-b.cmds:
			if r.nick != want {
				t.Errorf("command %d taken from %s, want %s", i+1, r.nick, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("command %d not taken", i+1)
		}
	}
}

// TestBusyAnswer: a command dropped because the command queue is full
// gets a short answer, and such answers are rate limited.
func TestBusyAnswer(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n")
	runSession(t, b, f) // no workers: the queue fills
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
	for i := range commandQueue {
		f.send(fmt.Sprintf(":p%d!~p@host%d PRIVMSG feedbot :help", i, i))
	}
	f.send(":late1!~l@one PRIVMSG feedbot :help", ":late2!~l@two PRIVMSG feedbot :help")
	if got := f.next(); got != "NOTICE late1 :busy: too many commands waiting; try again in a minute" {
		t.Errorf("the bot sent %q, want a busy answer to late1", got)
	}
	f.quiet("NOTICE late2")
}

// A job's result is told briefly, with the worker's own words when it
// wrote a message.
func TestResultText(t *testing.T) {
	for _, tc := range []struct {
		res  core.Result
		want string
	}{
		{core.Result{OK: true, Code: 201, ID: "n1"}, "job j done: item n1"},
		{core.Result{OK: true, Code: 200, Message: "deployed to prod"}, "job j done: deployed to prod"},
		{core.Result{OK: true, Code: 200}, "job j done"},
		{core.Result{Code: 404, Error: "no such item"}, "job j failed (404): no such item"},
		{core.Result{Code: 409, Message: "the train left"}, "job j failed (409): the train left"},
	} {
		if got := resultText("j", &tc.res); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.res, got, tc.want)
		}
	}
}

// registerWithAccountTag runs b against f, negotiates account-tag and
// completes the registration as feedbot.
func registerWithAccountTag(t *testing.T, b *Bridge, f *fakeServer) {
	t.Helper()
	runSession(t, b, f)
	startWorkers(t, b)
	f.expect("USER")
	f.send(":srv CAP * LS :account-tag")
	f.expect("CAP REQ :account-tag")
	f.send(":srv CAP * ACK :account-tag")
	f.expect("CAP END")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
}
