package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// ircBot is the bridge's nick in these tests.
const ircBot = "feedbot"

// ircEnv is a real Redis, a real ngircd and the built bridge binary with
// the IRC adapter on.
type ircEnv struct {
	redis  *testenv.Redis
	ngircd *testenv.Ngircd
	bridge *testenv.Bridge
	rdb    *redis.Client
	store  *thoonk.Store
}

// ircConfig renders a bridge config: the irc section's own keys (indented
// two spaces, without the enabled/server lines) come from section.
func ircConfig(redisURL, httpAddr, ircAddr, section string) string {
	return fmt.Sprintf(`redis:
  url: %s
http:
  listen: %s
jobs:
  maintenance_interval: 200ms
actions:
  routes:
    - feeds: ["deploys"]
      verbs: [ship]
      queue: deploy.actions
worker:
  queues: [feedbridge.actions]
acl:
  - actors: ["*"]
    feeds: ["*"]
    allow: [read]
  - actors: ["irc:alice!*@*"]
    feeds: ["news", "deploys"]
    allow: ["*"]
rest:
  enabled: false
atom:
  enabled: false
irc:
  enabled: true
  server: %s
  nick: %s
  reconnect: {min: 1s, max: 2s}
%s`, redisURL, httpAddr, ircAddr, ircBot, section)
}

// startIRC starts Redis and ngircd, creates feeds, and returns the
// environment; the bridge is started by startBridge once people are in.
func startIRC(t *testing.T, opts testenv.NgircdOptions, feeds ...string) *ircEnv {
	t.Helper()
	e := &ircEnv{redis: testenv.StartRedis(t), ngircd: testenv.StartNgircd(t, opts)}
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { e.rdb.Close() })
	var err error
	if e.store, err = thoonk.NewStore(e.rdb, thoonk.StoreOptions{Instance: "irc-test"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range feeds {
		if err := e.store.Create(context.Background(), f, thoonk.TypeFeed, nil); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *ircEnv) startBridge(t *testing.T, section string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	e.bridge = testenv.StartBridge(t, ircConfig(e.redis.URL, addr, e.ngircd.Addr, section), addr)
}

// publish publishes an item through core, as an application would.
func (e *ircEnv) publish(t *testing.T, feed, item string) string {
	t.Helper()
	r, err := e.store.Feed(feed).Publish(context.Background(), []byte(item), "")
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// publishOrdered publishes and then waits until Redis' clock has moved
// on, so that items published one after another get distinct times (a
// plain feed orders items published in the same millisecond by id).
func (e *ircEnv) publishOrdered(t *testing.T, feed, item string) string {
	t.Helper()
	id := e.publish(t, feed, item)
	e.tick(t)
	return id
}

// tick waits until Redis' clock has moved on by a millisecond.
func (e *ircEnv) tick(t *testing.T) {
	t.Helper()
	ms := func() int64 {
		tm, err := e.rdb.Time(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	for after := ms(); ms() <= after; {
	}
}

// restartServer starts ngIRCd again just after the bot failed a
// reconnect attempt and joins alice to channels at once, so that she is
// in them before the bot's next attempt (its reconnect delay, at least
// half of reconnect.min, must leave her time) and sees all it posts.
func (e *ircEnv) restartServer(t *testing.T, channels ...string) *ircPerson {
	t.Helper()
	const failed = "irc: disconnected; reconnecting"
	n := strings.Count(e.bridge.Log(), failed)
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(e.bridge.Log(), failed) == n {
		if time.Now().After(deadline) {
			t.Fatalf("the bot made no reconnect attempt in 30 s:\n%s", e.bridge.LogTail(20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.ngircd.Start()
	return ircJoin(t, e.ngircd.Addr, "alice", channels...)
}

// waitMark waits until the bot has stored, as delivered in channel, the
// revision of item id's last change in feed as its catch-up mark.
func (e *ircEnv) waitMark(t *testing.T, channel, feed, id string) {
	t.Helper()
	ctx := context.Background()
	key := "feedbridge.irc.last:" + e.ngircd.Addr + ":" + channel
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, _ := e.rdb.HGet(ctx, key, feed).Result()
		if it, err := e.store.Item(ctx, feed, id); err == nil && it.Rev != "" && v == it.Rev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot never stored %s as the mark of %s in %s (%s = %q)", id, feed, channel, key, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ircState polls /readyz for the irc adapter's state.
func (e *ircEnv) ircState(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + e.bridge.HTTPAddr + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var rd struct {
		Adapters map[string]struct {
			State string `json:"state"`
		} `json:"adapters"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&rd)
	return rd.Adapters["irc"].State
}

func (e *ircEnv) waitState(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.ircState(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("irc adapter never reached state %q (now %q); bridge log:\n%s", want, e.ircState(t), e.bridge.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ircPerson is someone in IRC: a second gopkg.in/irc.v4 client.
type ircPerson struct {
	t    *testing.T
	nick string
	c    *irc.Client
	msgs chan *irc.Message

	mu  sync.Mutex
	raw []string // every line received, CR LF included
}

// newsChannel starts ngIRCd, Redis with the feed news, alice in #news
// (and in more channels), and the bridge with #news showing news (section:
// the irc keys before channels, each line indented by two spaces); it
// returns once alice sees the bot in #news and the adapter is up.
func newsChannel(t *testing.T, opts testenv.NgircdOptions, section string, more ...string) (*ircEnv, *ircPerson) {
	t.Helper()
	e := startIRC(t, opts, "news")
	alice := ircJoin(t, e.ngircd.Addr, "alice", append([]string{"#news"}, more...)...)
	e.startBridge(t, section+`  channels:
    - name: "#news"
      feeds: [news]
`)
	alice.botJoined("#news")
	e.waitState(t, "up")
	return e, alice
}

// ircJoin connects as nick and joins channels, waiting for the server's
// confirmation of each.
func ircJoin(t *testing.T, addr, nick string, channels ...string) *ircPerson {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := &ircPerson{t: t, nick: nick, msgs: make(chan *irc.Message, 100000)}
	p.c = irc.NewClient(conn, irc.ClientConfig{Nick: nick, User: nick, Name: nick,
		Handler: irc.HandlerFunc(func(_ *irc.Client, m *irc.Message) {
			select {
			case p.msgs <- m:
			default:
			}
		})})
	p.c.Reader.DebugCallback = func(line string) {
		p.mu.Lock()
		p.raw = append(p.raw, line)
		p.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.c.RunContext(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	p.expect("welcome", 10*time.Second, func(m *irc.Message) bool { return m.Command == "001" })
	for _, ch := range channels {
		p.send("JOIN", ch)
		p.expect("end of names of "+ch, 10*time.Second, func(m *irc.Message) bool { return m.Command == "366" && m.Param(1) == ch })
	}
	return p
}

func (p *ircPerson) send(cmd string, params ...string) {
	p.t.Helper()
	if err := p.c.WriteMessage(&irc.Message{Command: cmd, Params: params}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *ircPerson) say(target, text string) { p.send("PRIVMSG", target, text) }

// expect waits for a message matching pred and returns it; what arrived
// meanwhile is consumed.
func (p *ircPerson) expect(what string, timeout time.Duration, pred func(*irc.Message) bool) *irc.Message {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case m := <-p.msgs:
			if pred(m) {
				return m
			}
			if len(seen) < 40 {
				seen = append(seen, m.String())
			}
		case <-deadline.C:
			p.mu.Lock()
			last := p.raw[max(0, len(p.raw)-10):]
			p.mu.Unlock()
			p.t.Fatalf("%s never saw %s within %s; saw:\n%s\nlast lines received:\n%s", p.nick, what, timeout,
				strings.Join(seen, "\n"), strings.Join(last, ""))
			return nil
		}
	}
}

// ircFromBot matches the bot's PRIVMSGs to target whose text contains sub.
func ircFromBot(cmd, target, sub string) func(*irc.Message) bool {
	return func(m *irc.Message) bool {
		return m.Prefix != nil && m.Prefix.Name == ircBot && m.Command == cmd && m.Param(0) == target &&
			strings.Contains(m.Trailing(), sub)
	}
}

// botLines returns the raw lines the bot sent to target, as relayed.
func (p *ircPerson) botLines(target string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.raw {
		m, err := irc.ParseMessage(l)
		if err == nil && m.Prefix != nil && m.Prefix.Name == ircBot && m.Param(0) == target {
			out = append(out, l)
		}
	}
	return out
}

// botJoined waits until the bot has joined every one of chs, in any order.
func (p *ircPerson) botJoined(chs ...string) {
	p.t.Helper()
	want := map[string]bool{}
	for _, ch := range chs {
		want[ch] = true
	}
	for len(want) > 0 {
		m := p.expect(fmt.Sprintf("the bot joining %v", chs), 30*time.Second, func(m *irc.Message) bool {
			return m.Command == "JOIN" && m.Prefix != nil && m.Prefix.Name == ircBot && want[m.Param(0)]
		})
		delete(want, m.Param(0))
	}
}
