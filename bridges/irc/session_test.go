package irc

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// fakeServer plays a scripted IRC server on loopback, for what no server
// in the test environment offers (SASL, account-tag, echo-message).
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	conn net.Conn
	r    *bufio.Reader
	// autoPong answers the bot's PINGs while the test reads lines (a
	// PING the test expects by prefix is left for it to answer).
	autoPong bool
	partial  string // a line cut by a read deadline
}

func newFakeServer(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeServer{t: t, ln: ln}
}

func (f *fakeServer) accept() {
	f.t.Helper()
	_ = f.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	f.conn, f.r = c, bufio.NewReader(c)
}

// expect reads lines until one starts with prefix and returns it.
func (f *fakeServer) expect(prefix string) string {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		line, err := f.readLine(deadline)
		if err != nil {
			f.t.Fatalf("server waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
		f.pong(line)
	}
}

// next returns the bot's next line (PINGs answered with autoPong).
func (f *fakeServer) next() string {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		line, err := f.readLine(deadline)
		if err != nil {
			f.t.Fatalf("server waiting for a line: %v", err)
		}
		if !f.pong(line) {
			return line
		}
	}
}

// quiet shows that the bot sends no line starting with prefix for a
// short while: the one wait of these tests, and only for something that
// must not happen.
func (f *fakeServer) quiet(prefix string) {
	f.t.Helper()
	deadline := time.Now().Add(300 * time.Millisecond)
	for {
		line, err := f.readLine(deadline)
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return
		}
		if err != nil {
			f.t.Fatalf("server reading: %v", err)
		}
		if strings.HasPrefix(line, prefix) {
			f.t.Fatalf("the bot sent %q too early", line)
		}
		f.pong(line)
	}
}

// until reads (and with autoPong answers) the bot's lines until cond
// holds; other lines are dropped.
func (f *fakeServer) until(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("never %s", what)
		}
		line, err := f.readLine(time.Now().Add(20 * time.Millisecond))
		var nerr net.Error
		switch {
		case err == nil:
			f.pong(line)
		case !errors.As(err, &nerr) || !nerr.Timeout():
			f.t.Fatalf("server reading: %v", err)
		}
	}
}

func (f *fakeServer) readLine(deadline time.Time) (string, error) {
	_ = f.conn.SetReadDeadline(deadline)
	line, err := f.r.ReadString('\n')
	f.partial += line
	if err != nil {
		return "", err
	}
	line, f.partial = strings.TrimRight(f.partial, "\r\n"), ""
	return line, nil
}

// pong answers a PING of the bot when autoPong is on.
func (f *fakeServer) pong(line string) bool {
	tok, ok := strings.CutPrefix(line, "PING :")
	if ok && f.autoPong {
		f.send(":srv PONG srv :" + tok)
	}
	return ok && f.autoPong
}

func (f *fakeServer) send(lines ...string) {
	f.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(f.conn, l+"\r\n"); err != nil {
			f.t.Fatal(err)
		}
	}
}

// testBridge builds the adapter from an irc section (YAML, indented two
// spaces) with a hub on an in-process Redis.
func testBridge(t *testing.T, section string) *Bridge {
	t.Helper()
	b, _ := testBridgeRedis(t, section)
	return b
}

// testBridgeRedis is testBridge that also returns the in-process Redis.
func testBridgeRedis(t *testing.T, section string) (*Bridge, *miniredis.Miniredis) {
	t.Helper()
	a, err := New(parseSection(t, section))
	if err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	st, err := thoonk.NewStore(rdb, thoonk.StoreOptions{Journal: thoonk.JournalOptions{MaxEvents: 1000, MaxItemBytes: 8192}})
	if err != nil {
		t.Fatal(err)
	}
	b := a.(*Bridge)
	b.setup(&core.Hub{Store: st, Events: thoonk.NewListener(st, thoonk.ListenerOptions{}), Metrics: core.NewMetrics(),
		Log: slog.New(slog.DiscardHandler), Feeds: &core.FeedFilter{}})
	return b, mr
}

// makePublic exposes every feed and lets anyone read it, so that channels
// announce them.
func makePublic(b *Bridge) {
	b.hub.Feeds = nil
	b.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}})
}

// runBridge runs the whole adapter (Run, with the event listener on the
// test's Redis, so that feed changes are announced) against the fake
// server, and accepts its first connection.
func runBridge(t *testing.T, b *Bridge, f *fakeServer) {
	t.Helper()
	lctx, stopListener := context.WithCancel(context.Background())
	listening := make(chan struct{})
	go func() { defer close(listening); _ = b.hub.Events.Run(lctx) }()
	if err := b.hub.Events.WaitConnected(lctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx, b.hub) }()
	t.Cleanup(func() {
		if f.conn != nil {
			f.conn.Close()
		}
		cancel()
		<-done
		stopListener()
		<-listening
	})
	f.accept()
}

// startWorkers runs the command workers until the test ends.
func startWorkers(t *testing.T, b *Bridge) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range commandWorkers {
		wg.Go(func() { b.commandWorker(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func parseSection(t *testing.T, section string) *core.Section {
	t.Helper()
	root, err := core.ParseYAML("bridge.yaml", []byte("irc:\n"+section))
	if err != nil {
		t.Fatal(err)
	}
	return root.Sub("irc")
}

// runSession connects the bridge to the fake server and runs one session
// (and the announcer) until the test ends; the session's error is sent on
// the returned channel.
func runSession(t *testing.T, b *Bridge, f *fakeServer) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := b.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.q.reset()
	b.setSession(s)
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { newAnnouncer(b).run(ctx, b.hub.Events.Subscribe(16)) })
	wg.Go(func() {
		_, err := s.run()
		done <- err
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	f.accept()
	return done
}

func waitErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
		return nil
	}
}

func TestSASLAndIdentity(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  sasl: {username: bot, password: "s3cret pw"}
  rate: {interval: 0s}
  channels:
    - {name: "#news", feeds: [news]}
`)
	runSession(t, b, f)
	f.expect("CAP LS 302")
	f.expect("NICK feedbot")
	f.expect("USER feedbridge 0 * :feedbridge")
	f.send(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL", ":srv CAP * LS :account-tag echo-message server-time")
	if got := f.expect("CAP REQ"); got != "CAP REQ :server-time account-tag echo-message sasl" {
		t.Errorf("request = %q", got)
	}
	f.send(":srv CAP * ACK :server-time account-tag echo-message sasl")
	f.expect("AUTHENTICATE PLAIN")
	f.send("AUTHENTICATE +")
	want := base64.StdEncoding.EncodeToString([]byte("\x00bot\x00s3cret pw"))
	if got := f.expect("AUTHENTICATE "); got != "AUTHENTICATE "+want {
		t.Errorf("credentials %q, want %q", got, want)
	}
	f.send(":srv 900 feedbot feedbot!u@h bot :You are now logged in", ":srv 903 feedbot :SASL authentication successful")
	f.expect("CAP END")
	f.send(":srv 001 feedbot :Welcome feedbot!~feedbridge@bot/cloak", ":srv 005 feedbot CHANTYPES=# CASEMAPPING=ascii :are supported by this server",
		":srv 376 feedbot :End of MOTD")
	f.expect("JOIN #news")

	// PING is answered at once.
	f.send("PING :tok 123")
	if got := f.expect("PONG"); got != "PONG :tok 123" {
		t.Errorf("pong = %q", got)
	}

	// The actor is the account the server proved, else the hostmask; a
	// client-only tag proves nothing; the bot's own echo is ignored.
	f.send("@account=alice;time=2026-01-01T00:00:00Z :al!~a@host PRIVMSG feedbot :help",
		"@+account=admin :mallory!~m@evil PRIVMSG #news :!help",
		":feedbot!~feedbridge@bot/cloak PRIVMSG #news :!help",
		"@account=* :anon!~n@host PRIVMSG feedbot :feeds")
	for _, want := range []core.Actor{
		{Protocol: "irc", ID: "alice", Display: "al"},
		{Protocol: "irc", ID: "mallory!~m@evil", Display: "mallory"},
		{Protocol: "irc", ID: "anon!~n@host", Display: "anon"},
	} {
		select {
		case r := <-b.cmds:
			if r.actor != want || r.account != (want.ID == "alice") {
				t.Errorf("actor %+v (account %v), want %+v", r.actor, r.account, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no command from %s", want.ID)
		}
	}
	select {
	case r := <-b.cmds:
		t.Errorf("unexpected command %+v", r)
	default:
	}
}

func TestSASLRefused(t *testing.T) {
	for name, script := range map[string][]string{
		"bad password": {":srv CAP * LS :sasl", "", ":srv CAP * ACK :sasl", "AUTHENTICATE +", ":srv 904 feedbot :SASL authentication failed"},
		"not offered":  {":srv CAP * LS :multi-prefix"},
		"no PLAIN":     {":srv CAP * LS :sasl=EXTERNAL"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeServer(t)
			b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  sasl: {username: bot, password: pw}\n")
			done := runSession(t, b, f)
			f.expect("USER")
			for _, l := range script {
				if l == "" {
					f.expect("CAP REQ")
					continue
				}
				f.send(l)
			}
			err := waitErr(t, done)
			if err == nil || !strings.Contains(err.Error(), "SASL") || !strings.Contains(err.Error(), "irc.sasl") {
				t.Errorf("error %v does not say SASL was refused and what to fix", err)
			}
		})
	}
}

func TestNickCollision(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  alt_nicks: [feedbot_]\n")
	runSession(t, b, f)
	f.expect("NICK feedbot")
	f.send(":srv CAP * LS :", ":srv 433 * feedbot :Nickname is already in use")
	f.expect("NICK feedbot_")
	f.send(":srv 433 * feedbot_ :Nickname is already in use")
	if got := f.expect("NICK "); !regexp.MustCompile(`^NICK feedb\d{4}$`).MatchString(got) {
		t.Errorf("third nick = %q", got)
	}
}

func TestKickAndBanRejoin(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  rejoin_delay: 1s
  join_retry: 1s
  nickserv: {password: "ns pw"}
  rate: {interval: 0s}
  channels:
    - {name: "#news", key: sesame, feeds: [news]}
    - {name: "#ops", feeds: [ops]}
    - {name: "#busy", feeds: [ops]}
    - {name: "#tls", feeds: [ops]}
    - {name: "#opers", feeds: [ops]}
`)
	runSession(t, b, f)
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 422 feedbot :No MOTD")
	if got := f.expect("PRIVMSG"); got != "PRIVMSG NickServ :IDENTIFY ns pw" {
		t.Errorf("identify = %q, want it first", got)
	}
	if got := f.expect("JOIN"); got != "JOIN #news,#ops,#busy,#tls,#opers sesame" {
		t.Errorf("join = %q, want keyed channels first, packed", got)
	}
	// a kick is answered by a rejoin; every kind of refused join is
	// retried: banned, temporarily unavailable (437 about a channel is
	// not about the nick), TLS users only, operators only
	f.send(":feedbot!~feedbridge@h JOIN #news", ":op!o@h KICK #news feedbot :go away",
		":srv 474 feedbot #ops :Cannot join channel (+b)", ":srv 437 feedbot #busy :Channel temporarily unavailable",
		":srv 489 feedbot #tls :Cannot join channel; SSL users only", ":srv 520 feedbot #opers :Cannot join channel (IRCops only)")
	want := []string{"JOIN #busy", "JOIN #news sesame", "JOIN #opers", "JOIN #ops", "JOIN #tls"}
	var got []string
	for range want {
		got = append(got, f.next())
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("after the kick and the refusals the bot sent %q, want %q", got, want)
	}
}

// TestPongNeverWaits: registration takes no token, so the JOIN takes
// the only one; with the rate limit exhausted, PONG still goes at once;
// ignored bots get no answer.
func TestPongNeverWaits(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  rate: {interval: 1h, burst: 1}
  channels: [{name: "#news", feeds: [news]}]
`)
	runSession(t, b, f)
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End of MOTD")
	if got := f.next(); got != "JOIN #news" {
		t.Errorf("got %q, want the JOIN at once after registration", got)
	}
	f.send("PING :now")
	if got := f.next(); got != "PONG :now" {
		t.Errorf("got %q before the PONG", got)
	}
	// lines are handled in order: once the third command is taken, the
	// first two were left alone
	f.send(":ci-bot!~c@h PRIVMSG feedbot :help", ":ChanServ!s@services PRIVMSG feedbot :help", ":al!~a@h PRIVMSG feedbot :help")
	select {
	case r := <-b.cmds:
		if r.nick != "al" {
			t.Errorf("an ignored nick's command was taken: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("al's command was not taken")
	}
}

// TestResultsAfterJoin: a job result kept across a reconnect goes to its
// channel only once the bot is back in it, never before the JOIN (a +n
// channel refuses messages from outside).
func TestResultsAfterJoin(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  rate: {interval: 0s}
  channels: [{name: "#news", feeds: [news]}]
`)
	old := testSession(b)
	b.joined(old, "#news")
	b.setSession(nil) // the connection is lost; then the result comes
	b.reply(request{s: old, nick: "alice", channel: "#news"}, "job 1 done", true)
	runSession(t, b, f)
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End of MOTD")
	if got := f.next(); got != "JOIN #news" {
		t.Fatalf("first line after registration %q, want JOIN #news", got)
	}
	f.quiet("PRIVMSG") // not before the server has the bot in the channel
	f.send(":feedbot!~feedbridge@h JOIN #news")
	if got := f.next(); got != "PRIVMSG #news :alice: job 1 done" {
		t.Errorf("after the JOIN the bot sent %q, want the kept result", got)
	}
}

// TestRegainNick: registered under an alternate nick, the bot takes its
// configured nick back when it sees the holder change nick or quit, or,
// when it sees nothing, on its next periodic try; once it has the nick
// it identifies with services again.
func TestRegainNick(t *testing.T) {
	for name, tc := range map[string]struct {
		retry string
		event string
	}{
		"holder changes nick": {"1h", ":feedbot!~x@elsewhere NICK :feedbot_away"},
		"holder quits":        {"1h", ":feedbot!~x@elsewhere QUIT :bye"},
		"periodic try":        {"1s", ""},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeServer(t)
			b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  alt_nicks: [feedbot_]
  nick_retry: `+tc.retry+`
  nickserv: {password: pw}
  rate: {interval: 0s}
`)
			runSession(t, b, f)
			f.expect("NICK feedbot")
			f.send(":srv 433 * feedbot :Nickname is already in use")
			f.expect("NICK feedbot_")
			f.send(":srv 001 feedbot_ :Welcome", ":srv 376 feedbot_ :End of MOTD")
			f.expect("PRIVMSG NickServ :IDENTIFY pw")
			if tc.event != "" {
				f.send(tc.event)
			}
			if got := f.next(); got != "NICK feedbot" {
				t.Fatalf("the bot sent %q, want NICK feedbot", got)
			}
			f.send(":feedbot_!~feedbridge@h NICK :feedbot")
			if got := f.next(); got != "PRIVMSG NickServ :IDENTIFY pw" {
				t.Errorf("after regaining its nick the bot sent %q, want IDENTIFY", got)
			}
		})
	}
}

// TestWhoisAccount: without account-tag, the services account comes from
// WHOIS (330), and only when WHOIS describes the same user@host as the
// message's sender.
func TestWhoisAccount(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n")
	runSession(t, b, f)
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
	s := b.current()
	for _, tc := range []struct{ mask, host, account, want string }{
		{"alice!~a@home.example", "home.example", "alice", "alice"},
		{"bob!~b@evil.example", "other.example", "bob", ""}, // the nick changed hands
		{"carol!~c@h.example", "h.example", "", ""},         // not logged in
	} {
		got := make(chan string, 1)
		go func() { got <- s.lookupAccount(context.Background(), tc.mask) }()
		nick, _, _ := strings.Cut(tc.mask, "!")
		if line := f.expect("WHOIS"); line != "WHOIS "+nick {
			t.Errorf("lookup sent %q", line)
		}
		user := strings.TrimPrefix(strings.Split(tc.mask, "@")[0], nick+"!")
		f.send(":srv 311 feedbot "+nick+" "+user+" "+tc.host+" * :real name", ":srv 312 feedbot "+nick+" srv :info")
		if tc.account != "" {
			f.send(":srv 330 feedbot " + nick + " " + tc.account + " :is logged in as")
		}
		f.send(":srv 318 feedbot " + nick + " :End of WHOIS list")
		select {
		case acct := <-got:
			if acct != tc.want {
				t.Errorf("account of %s = %q, want %q", tc.mask, acct, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer for %s", tc.mask)
		}
	}
}

func TestChanLimit(t *testing.T) {
	s := &session{isup: irc.NewISupportTracker()}
	_ = s.isup.Handle(&irc.Message{Command: "005", Params: []string{"me", "CHANLIMIT=#:2,&:", "are supported by this server"}})
	keep, over := s.chanLimits([]string{"#a", "&b", "#c", "#d", "&e"})
	if strings.Join(keep, " ") != "#a &b #c &e" || strings.Join(over, " ") != "#d" {
		t.Errorf("keep %q over %q", keep, over)
	}
}

func TestServerClosesWithError(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n")
	done := runSession(t, b, f)
	f.expect("USER")
	f.send("ERROR :Closing Link: 127.0.0.1 (K-Lined)")
	f.conn.Close()
	if err := waitErr(t, done); err == nil || !strings.Contains(err.Error(), "K-Lined") {
		t.Errorf("error = %v, want the server's reason", err)
	}
}

// TestRunStopsCleanly: Run connects, joins, reconnects after the server
// drops it, says QUIT when its context ends, returns nil and leaves no
// goroutine behind.
func TestRunStopsCleanly(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  reconnect: {min: 1s, max: 1s}
  rate: {interval: 0s}
  channels: [{name: "#news", feeds: [news]}]
`)
	lctx, stopListener := context.WithCancel(context.Background())
	listening := make(chan struct{})
	go func() { defer close(listening); _ = b.hub.Events.Run(lctx) }()
	t.Cleanup(func() { stopListener(); <-listening })
	if err := b.hub.Events.WaitConnected(lctx); err != nil {
		t.Fatal(err)
	}
	// the reads before a JOIN open the store's connections: open them
	// first, as they outlive Run
	if _, err := b.hub.Store.Journal("news").Last(lctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.hub.Store.Feeds(lctx); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, b.hub) }()
	for round := range 2 {
		f.accept()
		f.expect("USER")
		f.send(":srv 001 feedbot :Welcome", ":srv 376 feedbot :End")
		if got := f.expect("JOIN"); got != "JOIN #news" {
			t.Errorf("round %d: join = %q", round, got)
		}
		if round == 0 {
			f.conn.Close() // the server goes away: a new connection follows
		}
	}
	if st := b.hub.States()["irc"]; st.State != core.StateUp {
		t.Errorf("state %+v, want up", st)
	}
	cancel()
	if got := f.expect("QUIT"); !strings.HasPrefix(got, "QUIT :") {
		t.Errorf("quit = %q", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Run, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A channel's audience proves nothing: only feeds that anonymous IRC users
// may read are announced, whatever the channel mapping says.
func TestOnlyPublicFeedsAreAnnounced(t *testing.T) {
	b := testBridge(t, "  enabled: true\n  server: 127.0.0.1:6667\n  channels:\n    - {name: \"#c\", feeds: [\"*\"]}\n")
	b.hub.Feeds = nil // every feed exposed
	b.hub.ACL = core.MustACL(
		core.ACLRule{Actors: []string{"*"}, Feeds: []string{"news"}, Allow: []string{"read"}},
		core.ACLRule{Actors: []string{"irc:alice"}, Feeds: []string{"secret"}, Allow: []string{"read"}},
	)
	if !b.public("news") || b.public("secret") {
		t.Fatalf("public(news)=%v public(secret)=%v", b.public("news"), b.public("secret"))
	}
}

// testSession is a registered session of b that is not connected: what the
// announcer and the queue need to build and queue lines.
func testSession(b *Bridge) *session {
	s := &session{b: b, log: b.log, isup: irc.NewISupportTracker(), user: "~feedbridge"}
	s.wire = wire{maxLines: b.cfg.MaxLines}
	s.setPrefix("feedbot", "", "")
	b.setSession(s)
	return s
}

// TestJoinNeverDropped: replies filling the control queue, and results
// kept from the previous connection, neither drop a JOIN nor go before
// the bot is in the channel (a reply to a channel the bot has not joined
// yet is refused by +n channels).
func TestJoinNeverDropped(t *testing.T) {
	b := testBridge(t, "  enabled: true\n  server: 127.0.0.1:6667\n  channels: [{name: \"#news\", feeds: [news]}]\n")
	s := testSession(b)
	b.reply(request{s: s, nick: "alice", channel: "#news"}, "job 1 done", true)
	b.q.reset() // a new connection: the result is kept
	for b.q.pushCtrl(outLine{text: "NOTICE bob :an answer\r\n"}) {
	}
	b.join(s, []string{"#news"})
	got := drain(b.q)
	if len(got) == 0 || got[0] != "JOIN #news" || slices.Contains(got, "PRIVMSG #news :alice: job 1 done") {
		t.Errorf("lines %q; want the JOIN first and no result before the bot is in the channel", got)
	}
	b.joined(s, "#news")
	if got := drain(b.q); len(got) != 1 || got[0] != "PRIVMSG #news :alice: job 1 done" {
		t.Errorf("once joined: %q, want the kept result", got)
	}
}

// TestNickTooLong: a server with RFC 2812's 9-character nick limit
// (ngIRCd's default) refuses "feedbridge" with 432; the fallback nicks
// must fit, and when none is accepted the error gives the server's reason.
func TestNickTooLong(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbridge\n")
	done := runSession(t, b, f)
	f.expect("NICK feedbridge")
	f.send(":srv 432 * feedbridge :Nickname too long, max. 9 characters")
	for range 10 {
		got := f.expect("NICK ")
		if !regexp.MustCompile(`^NICK feedb\d{4}$`).MatchString(got) {
			t.Fatalf("fallback nick = %q, want feedb and 4 digits (9 characters)", got)
		}
		f.send(":srv 432 * " + strings.TrimPrefix(got, "NICK ") + " :Erroneous nickname")
	}
	err := waitErr(t, done)
	if err == nil || !strings.Contains(err.Error(), "Erroneous nickname") || !strings.Contains(err.Error(), "irc.nick") {
		t.Errorf("error %v; want the server's reason and the keys to change", err)
	}
}

// TestAutoChannelsOnlyForItemFeeds: job feeds and queues (an action
// route's queue, say) have nothing to announce and get no channel, at
// start or when created later.
func TestAutoChannelsOnlyForItemFeeds(t *testing.T) {
	b := testBridge(t, "  enabled: true\n  server: 127.0.0.1:6667\n  auto_channels: {enabled: true}\n")
	b.hub.Feeds = nil // every feed exposed
	b.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	ctx := context.Background()
	for name, typ := range map[string]thoonk.FeedType{"news": thoonk.TypeFeed, "tasks": thoonk.TypeSorted, "deploy.actions": thoonk.TypeJob, "mail": thoonk.TypeQueue} {
		if err := b.hub.Store.Create(ctx, name, typ, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := testSession(b)
	if got := strings.Join(b.desiredChannels(ctx, s), " "); got != "#feed-news #feed-tasks" {
		t.Errorf("auto channels at start: %q, want #feed-news #feed-tasks", got)
	}
	a := newAnnouncer(b)
	for name, typ := range map[string]thoonk.FeedType{"alerts": thoonk.TypeFeed, "more.actions": thoonk.TypeJob} {
		if err := b.hub.Store.Create(ctx, name, typ, nil); err != nil {
			t.Fatal(err)
		}
		a.handle(ctx, thoonk.Event{Type: thoonk.EventCreate, Feed: name})
	}
	if got := strings.Join(drain(b.q), " "); got != "JOIN #feed-alerts" {
		t.Errorf("joins for created feeds: %q, want JOIN #feed-alerts", got)
	}
}
