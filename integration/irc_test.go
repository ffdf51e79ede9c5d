package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/irc.v4"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/integration/testenv"
)

// TestIRCAnnouncements: the bot joins its channels; items published
// through core appear, hostile items inject nothing, and a long item
// arrives as lines that each fit the 512-byte limit as relayed.
func TestIRCAnnouncements(t *testing.T) {
	e, alice := newsChannel(t, testenv.NgircdOptions{}, `  rate: {interval: 0s}
  max_lines: 10
`, "#evil")

	e.publish(t, "news", `{"title":"Hello IRC","link":"https://example.org/1"}`)
	m := alice.expect("the first item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "Hello IRC"))
	if got, want := m.Trailing(), "[news] Hello IRC — https://example.org/1"; got != want {
		t.Errorf("announcement = %q, want %q", got, want)
	}

	// CR LF inside an item must not become a command of its own.
	e.publish(t, "news", "innocent\r\nJOIN #evil\r\nPRIVMSG #evil :pwned\x01ACTION spoof\x01")
	alice.expect("the injected text as text", 10*time.Second, ircFromBot("PRIVMSG", "#news", "JOIN #evil"))
	alice.expect("the second injected line as text", 10*time.Second, ircFromBot("PRIVMSG", "#news", "PRIVMSG #evil :pwned"))
	alice.send("NAMES", "#evil")
	names := alice.expect("NAMES of #evil", 10*time.Second, func(m *irc.Message) bool { return m.Command == "353" })
	if strings.Contains(names.Trailing(), ircBot) {
		t.Errorf("the bot joined #evil: NAMES %q", names.Trailing())
	}
	for _, l := range alice.botLines("#evil") {
		t.Errorf("the bot spoke in #evil: %q", l)
	}

	// A 3,000-character item: correctly split, nothing lost, each relayed
	// line within 512 bytes.
	var words []string
	for i := 0; len(strings.Join(words, " ")) < 3000; i++ {
		words = append(words, fmt.Sprintf("wörd%04d", i))
	}
	long := strings.Join(words, " ")
	id := e.publish(t, "news", long)
	var parts []string
	for !strings.Contains(strings.Join(parts, " "), words[len(words)-1]) {
		m := alice.expect("the long item's lines", 10*time.Second, ircFromBot("PRIVMSG", "#news", "wörd"))
		parts = append(parts, m.Trailing())
	}
	link := " — http://" + e.bridge.HTTPAddr + "/v1/feeds/news/items/" + id
	if got := strings.Join(parts, " "); got != "[news] "+long+link {
		t.Errorf("the long item arrived as %d lines that join to %d bytes, want %d:\n%s", len(parts), len(got), len(long)+7+len(link), got)
	}
	if len(parts) < 7 {
		t.Errorf("the long item took %d lines; 3,000 bytes cannot fit in fewer than 7", len(parts))
	}
	for _, l := range alice.botLines("#news") {
		if len(l) > 512 {
			t.Errorf("relayed line of %d bytes: %q", len(l), l)
		}
	}
}

// TestIRCCommands: commands become jobs with the actor the server proved;
// with the built-in worker a publish comes back as an announcement and a
// result; a denied command creates no job.
func TestIRCCommands(t *testing.T) {
	e := startIRC(t, testenv.NgircdOptions{}, "news", "deploys")
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#news")
	bob := ircJoin(t, e.ngircd.Addr, "bob", "#news")
	e.startBridge(t, `  rate: {interval: 0s}
  commands:
    rate: {interval: 1m, burst: 6}
  channels:
    - name: "#news"
      feeds: [news]
      verbs: {ship: deploys}
`)
	alice.botJoined("#news")
	e.waitState(t, "up")

	alice.say("#news", "!publish news hello from irc")
	ack := alice.expect("the acknowledgement", 10*time.Second, ircFromBot("PRIVMSG", "#news", "alice: publish on news queued as job "))
	job := regexp.MustCompile(`job ([0-9a-f]{32})`).FindStringSubmatch(ack.Trailing())
	if job == nil {
		t.Fatalf("no job id in %q", ack.Trailing())
	}
	// the announcement and the result race (replies go before
	// announcements): both come, in either order
	announced, done := ircFromBot("PRIVMSG", "#news", "[news] hello from irc"), ircFromBot("PRIVMSG", "#news", "alice: job "+job[1]+" done: item ")
	var res *irc.Message
	for seen := false; res == nil || !seen; {
		m := alice.expect("the announcement of the published item and the job's result", 20*time.Second,
			func(m *irc.Message) bool { return announced(m) || done(m) })
		if done(m) {
			res = m
		} else {
			seen = true
		}
	}
	id := strings.TrimPrefix(res.Trailing(), "alice: job "+job[1]+" done: item ")
	if got, err := e.store.Feed("news").Get(context.Background(), id); err != nil || string(got) != "hello from irc" {
		t.Errorf("item %q = %q, %v; want the published text", id, got, err)
	}

	// A custom verb on a queue no worker serves: the job stays, and it
	// carries the actor as the server proved it, never a claimed one.
	alice.say("#news", "!ship 42 now")
	alice.expect("the ship acknowledgement", 10*time.Second, ircFromBot("PRIVMSG", "#news", "alice: ship on deploys queued as job "))
	j, err := e.store.Jobs("deploy.actions").Get(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a, err := core.DecodeActionJob(j.Item)
	if err != nil {
		t.Fatal(err)
	}
	want := core.Actor{Protocol: "irc", ID: "alice!~alice@127.0.0.1", Display: "alice"}
	if a.Verb != "ship" || a.Feed != "deploys" || strings.Join(a.Args, " ") != "42 now" || a.Actor != want {
		t.Errorf("job = verb %q feed %q args %q actor %+v; want ship on deploys, args 42 now, actor %+v", a.Verb, a.Feed, a.Args, a.Actor, want)
	}

	// bob may read but not publish: refused, and no job is put.
	before := e.rdb.Get(context.Background(), "feed.publishes:feedbridge.actions").Val()
	bob.say("#news", "!publish news sneaky")
	bob.expect("the denial", 10*time.Second, ircFromBot("PRIVMSG", "#news", "bob: denied: you may not publish on news"))
	if after := e.rdb.Get(context.Background(), "feed.publishes:feedbridge.actions").Val(); after != before {
		t.Errorf("a denied command put a job: publishes %s -> %s", before, after)
	}

	// Reads are answered privately.
	e.publish(t, "news", "second item")
	bob.say("#news", "!items news 2")
	bob.expect("the items listing", 10*time.Second, ircFromBot("NOTICE", "bob", ": second item"))
	bob.say(ircBot, "feeds")
	bob.expect("the feed list", 10*time.Second, ircFromBot("NOTICE", "bob", "news ("))

	// Bad input: a usage message, nothing else.
	bob.say("#news", "!retract")
	bob.expect("the usage", 10*time.Second, ircFromBot("NOTICE", "bob", "usage: retract FEED ID"))

	// Per-person rate limit: bob has used 4 of his 6 commands; of 4 more,
	// 2 are answered, the 7th gets one warning and the 8th nothing.
	for range 4 {
		bob.say(ircBot, "help")
	}
	for range 2 {
		bob.expect("an answer within the limit", 10*time.Second, ircFromBot("NOTICE", "bob", "commands:"))
	}
	alice.say(ircBot, "help")
	alice.expect("an answer to someone else", 10*time.Second, ircFromBot("NOTICE", "alice", "commands:"))
	// what the bot sent bob before answering alice has reached bob's client
	// once the server has answered a PING bob sends now
	bob.send("PING", "sync")
	bob.expect("the server's PONG", 10*time.Second, func(m *irc.Message) bool { return m.Command == "PONG" && m.Trailing() == "sync" })
	warnings, answers := 0, 0
	for _, l := range bob.botLines("bob") {
		warnings += strings.Count(l, "slow down")
		answers += strings.Count(l, "commands:")
	}
	if warnings != 1 || answers != 2 {
		t.Errorf("bob got %d warnings and %d answers to 4 commands over his limit; want 1 and 2", warnings, answers)
	}
}

// TestIRCReconnectCatchUp: ngircd restarts; the bot reconnects, rejoins
// from its config and announces what it missed per the catch-up policy.
func TestIRCReconnectCatchUp(t *testing.T) {
	e, alice := newsChannel(t, testenv.NgircdOptions{}, `  rate: {interval: 0s}
  reconnect: {min: 3s, max: 3s}
  catch_up: 2
`)
	id := e.publishOrdered(t, "news", "before the restart")
	alice.expect("the live item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "before the restart"))
	e.waitMark(t, "#news", "news", id) // delivered, as the server confirmed

	e.ngircd.Stop()
	e.waitState(t, "reconnecting")
	for i := 1; i <= 5; i++ {
		e.publishOrdered(t, "news", fmt.Sprintf("missed %d", i))
	}
	alice = e.restartServer(t, "#news")
	alice.botJoined("#news")
	got := []string{
		alice.expect("the summary", 20*time.Second, ircFromBot("PRIVMSG", "#news", "")).Trailing(),
		alice.expect("the first caught-up item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "")).Trailing(),
		alice.expect("the second caught-up item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "")).Trailing(),
	}
	want := []string{"3 changes in feed news while I was away", "[news] missed 4", "[news] missed 5"}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("catch-up line %d = %q, want %q", i, got[i], want[i])
		}
	}
	// live again, and nothing announced twice
	e.publish(t, "news", "after the restart")
	m := alice.expect("the next live item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] "))
	if !strings.HasPrefix(m.Trailing(), "[news] after the restart — http") {
		t.Errorf("after catch-up the bot said %q", m.Trailing())
	}
}

// TestIRCFloodPenalties: with ngircd's default flood penalties, a burst of
// 100 items never gets the bot disconnected: it paces itself below the
// server's rate (so its keepalive PINGs are answered at once), announces
// what fits its queue and summarizes the rest.
func TestIRCFloodPenalties(t *testing.T) {
	e, alice := newsChannel(t, testenv.NgircdOptions{Penalties: true}, `  rate: {interval: 500ms, burst: 3}
  ping_interval: 1s
  queue_lines: 20
`)
	for i := 1; i <= 100; i++ {
		e.publish(t, "news", fmt.Sprintf("burst %d", i))
	}
	shown := 0
	summarized := 0
	for summarized == 0 {
		m := alice.expect("the burst", 60*time.Second, func(m *irc.Message) bool {
			return m.Prefix != nil && m.Prefix.Name == ircBot && (m.Command == "PRIVMSG" || m.Command == "QUIT")
		})
		if m.Command == "QUIT" {
			t.Fatalf("the bot quit during the burst: %q; bridge log:\n%s", m.Trailing(), e.bridge.LogTail(20))
		}
		if n, ok := strings.CutPrefix(m.Trailing(), "…and "); ok {
			fmt.Sscanf(n, "%d more in feed news", &summarized)
			continue
		}
		shown++
		if want := fmt.Sprintf("[news] burst %d — http", shown); !strings.HasPrefix(m.Trailing(), want) {
			t.Errorf("line %d = %q, want %q", shown, m.Trailing(), want)
		}
	}
	// the queue holds 20 lines; how many more go out while the burst is
	// queued depends on the machine's speed, but every item is shown or
	// counted, once
	if shown+summarized != 100 || shown < 20 {
		t.Errorf("%d items shown and %d summarized; want at least 20 shown (queue_lines) and the rest summarized", shown, summarized)
	}
	// still connected and responsive: a command is answered
	alice.say("#news", "!help")
	alice.expect("the help", 30*time.Second, ircFromBot("NOTICE", "alice", "commands:"))
	if log := e.bridge.Log(); strings.Contains(log, "disconnected") {
		t.Errorf("the bot was disconnected during the burst:\n%s", e.bridge.LogTail(20))
	}
	if e.ircState(t) != "up" {
		t.Errorf("irc state %q after the burst", e.ircState(t))
	}
}

// TestIRCAutoChannels: with auto channels, every exposed feed gets its own
// channel (name sanitized and cut to the server's CHANNELLEN), the backlog
// is posted after joining, announcements go by NOTICE as configured, and a
// feed created later gets its channel too.
func TestIRCAutoChannels(t *testing.T) {
	long := "team:353:member:12:tasks/" + strings.Repeat("x", 40)
	e := startIRC(t, testenv.NgircdOptions{}, "team:353:tasks", long)
	for i := 1; i <= 3; i++ {
		e.publishOrdered(t, "team:353:tasks", fmt.Sprintf("task %d", i))
	}
	longChan := ("#feed-team-353-member-12-tasks-" + strings.Repeat("x", 40))[:50] // ngIRCd: CHANNELLEN=50
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#feed-team-353-tasks", "#feed-alerts", longChan)
	e.startBridge(t, `  rate: {interval: 0s}
  links: {item: ""}
  auto_channels:
    enabled: true
    message: notice
    backlog: 2
`)
	alice.botJoined("#feed-team-353-tasks", longChan)
	for _, want := range []string{"[team:353:tasks] task 2", "[team:353:tasks] task 3"} {
		if m := alice.expect("the backlog", 10*time.Second, ircFromBot("NOTICE", "#feed-team-353-tasks", "task")); m.Trailing() != want {
			t.Errorf("backlog line %q, want %q", m.Trailing(), want)
		}
	}

	if err := e.store.Create(context.Background(), "alerts", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	alice.botJoined("#feed-alerts")
	e.publish(t, "alerts", "disk full")
	if m := alice.expect("the new feed's item", 10*time.Second, ircFromBot("NOTICE", "#feed-alerts", "disk")); m.Trailing() != "[alerts] disk full" {
		t.Errorf("alerts announcement %q", m.Trailing())
	}
}

// TestIRCNickOverServerLimit: ngIRCd's default nick limit (9 characters,
// as in RFC 2812 and Debian's packaged config) refuses a longer nick, such
// such as "feedbridge", with 432; the bot still registers under a
// fallback nick, joins and announces.
func TestIRCNickOverServerLimit(t *testing.T) {
	e := startIRC(t, testenv.NgircdOptions{Extra: "[Limits]\n    MaxNickLength = 9"}, "news")
	alice := ircJoin(t, e.ngircd.Addr, "alice", "#news")
	addr := testenv.FreeAddr(t)
	cfg := strings.Replace(ircConfig(e.redis.URL, addr, e.ngircd.Addr, `  rate: {interval: 0s}
  channels:
    - name: "#news"
      feeds: [news]
`), "nick: "+ircBot, "nick: feedbridge", 1)
	e.bridge = testenv.StartBridge(t, cfg, addr)
	join := alice.expect("the bot joining under a fallback nick", 30*time.Second, func(m *irc.Message) bool {
		return m.Command == "JOIN" && m.Prefix != nil && m.Param(0) == "#news" && strings.HasPrefix(m.Prefix.Name, "feedb")
	})
	bot := join.Prefix.Name
	e.publish(t, "news", "short nicks only")
	alice.expect("the item from "+bot, 10*time.Second, func(m *irc.Message) bool {
		return m.Prefix != nil && m.Prefix.Name == bot && m.Command == "PRIVMSG" && strings.Contains(m.Trailing(), "short nicks only")
	})
}

// TestIRCCatchUpAfterRetractAndEdit: the last announced item is retracted
// and an older one edited while the bot is away; the catch-up posts from
// the feed's journal exactly what changed after the last delivered line,
// in order: the retraction, the edit and the new item.
func TestIRCCatchUpAfterRetractAndEdit(t *testing.T) {
	e, alice := newsChannel(t, testenv.NgircdOptions{}, `  rate: {interval: 0s}
  reconnect: {min: 3s, max: 3s}
  catch_up: 5
`)
	first := e.publishOrdered(t, "news", "first")
	alice.expect("the first item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] first"))
	second := e.publishOrdered(t, "news", "second")
	alice.expect("the second item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] second"))
	e.waitMark(t, "#news", "news", second)

	e.ngircd.Stop()
	e.waitState(t, "reconnecting")
	ctx := context.Background()
	if err := e.store.Feed("news").Retract(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Feed("news").Edit(ctx, first, []byte("first, corrected")); err != nil {
		t.Fatal(err)
	}
	e.tick(t)
	e.publishOrdered(t, "news", "third")
	alice = e.restartServer(t, "#news")
	alice.botJoined("#news")
	for _, want := range []string{"[news] retracted " + second, "[news] edited: first, corrected", "[news] third"} {
		if m := alice.expect("a caught-up item", 20*time.Second, ircFromBot("PRIVMSG", "#news", "[news] ")); !strings.HasPrefix(m.Trailing(), want) {
			t.Errorf("catch-up line %q, want %q", m.Trailing(), want)
		}
	}
	e.publish(t, "news", "after")
	if m := alice.expect("the next live item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] ")); !strings.HasPrefix(m.Trailing(), "[news] after") {
		t.Errorf("after the catch-up the bot said %q", m.Trailing())
	}
}

// TestIRCRefusedSendCaughtUp: the channel is moderated (+m) while an item
// is announced: ngIRCd refuses the bot's line (404), the bot does not
// count it as delivered, and once it may speak again it posts it.
func TestIRCRefusedSendCaughtUp(t *testing.T) {
	// alice is first in #news: its operator
	e, alice := newsChannel(t, testenv.NgircdOptions{}, `  rate: {interval: 0s}
  join_retry: 1s
  catch_up: 5
`)
	e.publishOrdered(t, "news", "first")
	alice.expect("the first item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] first"))
	mode := func(change string) {
		alice.send("MODE", "#news", change)
		alice.expect("MODE "+change, 10*time.Second, func(m *irc.Message) bool { return m.Command == "MODE" && m.Param(1) == change })
	}
	mode("+m")
	e.publishOrdered(t, "news", "muted")
	e.bridge.WaitLog("refused the channel", 10*time.Second)
	mode("-m")
	if m := alice.expect("the refused item, posted again", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] ")); !strings.HasPrefix(m.Trailing(), "[news] muted") {
		t.Errorf("once unmuted the bot said %q, want the refused item", m.Trailing())
	}
	e.publish(t, "news", "after")
	if m := alice.expect("the next live item", 10*time.Second, ircFromBot("PRIVMSG", "#news", "[news] ")); !strings.HasPrefix(m.Trailing(), "[news] after") {
		t.Errorf("then the bot said %q, want the next item", m.Trailing())
	}
}
