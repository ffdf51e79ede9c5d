package irc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// TestCatchUpSummaryCountsEveryItem: a catch-up that meets a channel lane
// already counting dropped items (a burst, then a resync) adds every
// missed item to the summary, not one.
func TestCatchUpSummaryCountsEveryItem(t *testing.T) {
	b := testBridge(t, "  enabled: true\n  server: 127.0.0.1:6667\n  queue_lines: 4\n  links: {feed: \"\"}\n  channels: [{name: \"#news\", feeds: [news]}]\n")
	ctx := context.Background()
	st := b.hub.Store
	if err := st.Create(ctx, "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	seen, err := st.Feed("news").Publish(ctx, []byte("seen"), "")
	if err != nil {
		t.Fatal(err)
	}
	b.marks.delivered(mark{channel: "#news", feed: "news", rev: revOf(t, b, "news", seen.ID)})
	for i := range 30 {
		if _, err := st.Feed("news").Publish(ctx, []byte(fmt.Sprint("missed ", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	b.hub.Feeds = nil // every feed exposed
	b.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	s := testSession(b)
	b.joined(s, "#news")
	a := newAnnouncer(b)
	tg := target{"#news", b.c.channels[0].spec}
	for i := range 6 { // 4 fit the lane, 2 are counted
		a.post(s, tg, kindPublish, "news", fmt.Sprint("live", i), []byte("live"), "", nil)
	}
	a.catchUp(ctx, s, "#news", false) // after a resync
	got := drain(b.q)
	if want := "PRIVMSG #news :…and 32 more in feed news"; len(got) == 0 || got[len(got)-1] != want {
		t.Errorf("lines %q; want the last to be %q (2 dropped live items + 30 missed)", got, want)
	}
}

// TestCatchUpFromTheJournal: what changed while the bot was away (edits,
// retractions, trims, new items) is posted from the feed's journal, after
// the last announced change, in order, each once. Redis' clock here is a
// day behind the bridge's (it runs on another host): the journal's
// revisions come from Redis, never from the bridge's clock.
func TestCatchUpFromTheJournal(t *testing.T) {
	for name, tc := range map[string]struct {
		config map[string]string
		away   func(t *testing.T, f *thoonk.Feed, tick func(), two string)
		want   []string
	}{
		"edited": {
			away: func(t *testing.T, f *thoonk.Feed, tick func(), two string) {
				tick()
				if err := f.Edit(context.Background(), two, []byte("two, corrected")); err != nil {
					t.Fatal(err)
				}
				publishAt(t, f, tick, "three")
			},
			want: []string{"PRIVMSG #news :[news] edited: two, corrected", "PRIVMSG #news :[news] three"},
		},
		"retracted": {
			away: func(t *testing.T, f *thoonk.Feed, tick func(), two string) {
				tick()
				if err := f.Retract(context.Background(), two); err != nil {
					t.Fatal(err)
				}
				publishAt(t, f, tick, "three")
			},
			want: []string{"PRIVMSG #news :[news] retracted ", "PRIVMSG #news :[news] three"},
		},
		"trimmed": {
			config: map[string]string{"max_length": "2"},
			away: func(t *testing.T, f *thoonk.Feed, tick func(), _ string) {
				publishAt(t, f, tick, "three") // trims one
				publishAt(t, f, tick, "four")  // trims two, the mark
			},
			want: []string{"PRIVMSG #news :[news] retracted ", "PRIVMSG #news :[news] three",
				"PRIVMSG #news :[news] retracted ", "PRIVMSG #news :[news] four"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeServer(t)
			f.autoPong = true
			b, mr := testBridgeRedis(t, `  enabled: true
  server: `+f.ln.Addr().String()+`
  nick: feedbot
  rate: {interval: 0s}
  reconnect: {min: 1s, max: 1s}
  catch_up: 5
  channels: [{name: "#news", feeds: [news]}]
`)
			makePublic(b)
			clock := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
			tick := func() { clock = clock.Add(time.Second); mr.SetTime(clock) }
			tick()
			if err := b.hub.Store.Create(context.Background(), "news", thoonk.TypeFeed, tc.config); err != nil {
				t.Fatal(err)
			}
			feed := b.hub.Store.Feed("news")
			runBridge(t, b, f)
			registerAndWait(f, b, "#news")
			publishAt(t, feed, tick, "one")
			f.expect("PRIVMSG #news :[news] one")
			two := publishAt(t, feed, tick, "two")
			f.expect("PRIVMSG #news :[news] two")
			rev := revOf(t, b, "news", two)
			f.until("saved the mark of \"two\"", func() bool { return savedMark(t, b, "#news", "news") == rev })
			f.conn.Close()

			f.accept() // the bot is back, not registered yet: what changes now is missed
			tc.away(t, feed, tick, two)
			register(f, "#news")
			for _, want := range tc.want {
				if got := f.expect("PRIVMSG"); !strings.HasPrefix(got, want) {
					t.Errorf("catch-up line %q, want %q", got, want)
				}
			}
			publishAt(t, feed, tick, "live") // (on a feed of 2, it trims "three")
			for got := f.expect("PRIVMSG"); got != "PRIVMSG #news :[news] live"; got = f.expect("PRIVMSG") {
				if !strings.Contains(got, "] retracted ") {
					t.Errorf("after the catch-up the bot sent %q, want the live item", got)
				}
			}
		})
	}
}

// journalEvent returns the journal's event of an item's last change, as
// the listener would deliver it.
func journalEvent(t *testing.T, b *Bridge, feed, id string) thoonk.Event {
	t.Helper()
	es, _, err := b.hub.Store.Journal(feed).Read(context.Background(), thoonk.RevStart, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(es) - 1; i >= 0; i-- {
		if e := es[i]; e.ID == id {
			return thoonk.Event{Type: e.Type, Feed: feed, ID: e.ID, Item: e.Item, Position: e.Position, Rev: e.Rev}
		}
	}
	t.Fatalf("no journal entry for %s", id)
	return thoonk.Event{}
}

// TestEventInFlightAtJoinWaitsForCatchUp: an event published while the
// bot was away but delivered after it rejoined (before its catch-up ran)
// is not posted ahead of the catch-up, nor twice: the channel gets the
// edit, then the new item, each once.
func TestEventInFlightAtJoinWaitsForCatchUp(t *testing.T) {
	b, feed, tick := newsBridge(t, "  catch_up: 5\n")
	ctx := context.Background()
	publishAt(t, feed, tick, "one")
	two := publishAt(t, feed, tick, "two")
	b.marks.delivered(mark{channel: "#news", feed: "news", rev: revOf(t, b, "news", two)}) // the last line delivered before the bot left
	tick()
	if err := feed.Edit(ctx, two, []byte("two, corrected")); err != nil {
		t.Fatal(err)
	}
	three := publishAt(t, feed, tick, "three")

	s := testSession(b)
	a := newAnnouncer(b)
	b.joined(s, "#news")
	a.handle(ctx, journalEvent(t, b, "news", three)) // the late event: the join's catch-up runs first
	want := []string{"PRIVMSG #news :[news] edited: two, corrected", "PRIVMSG #news :[news] three"}
	if got := drain(b.q); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// newsBridge returns a bridge (not connected) whose channel #news shows
// the public plain feed news on a miniredis whose clock tick moves one
// second on; extra adds keys to the irc section.
func newsBridge(t *testing.T, extra string) (*Bridge, *thoonk.Feed, func()) {
	t.Helper()
	b, mr := testBridgeRedis(t, "  enabled: true\n  server: 127.0.0.1:6667\n"+extra+"  channels: [{name: \"#news\", feeds: [news]}]\n")
	makePublic(b)
	clock := time.Now().Truncate(time.Second)
	tick := func() { clock = clock.Add(time.Second); mr.SetTime(clock) }
	tick()
	if err := b.hub.Store.Create(context.Background(), "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	return b, b.hub.Store.Feed("news"), tick
}

// TestLateEditAfterCatchUp: an edit event that reaches the bridge only
// after a catch-up already posted it is not announced again; a later
// edit still is.
func TestLateEditAfterCatchUp(t *testing.T) {
	b, feed, tick := newsBridge(t, "  catch_up: 5\n")
	ctx := context.Background()
	one := publishAt(t, feed, tick, "one")
	b.marks.delivered(mark{channel: "#news", feed: "news", rev: revOf(t, b, "news", one)})
	two := publishAt(t, feed, tick, "two")
	tick()
	if err := feed.Edit(ctx, two, []byte("two, corrected")); err != nil {
		t.Fatal(err)
	}
	s := testSession(b)
	a := newAnnouncer(b)
	b.joined(s, "#news")
	a.housekeeping(ctx)
	want := []string{"PRIVMSG #news :[news] two", "PRIVMSG #news :[news] edited: two, corrected"}
	if got := drain(b.q); !slices.Equal(got, want) {
		t.Fatalf("catch-up lines %q, want %q", got, want)
	}
	a.handle(ctx, journalEvent(t, b, "news", two)) // the edit's event, late
	if got := drain(b.q); len(got) != 0 {
		t.Errorf("the late edit event was announced again: %q", got)
	}
	if err := feed.Edit(ctx, two, []byte("two, again")); err != nil {
		t.Fatal(err)
	}
	a.handle(ctx, journalEvent(t, b, "news", two))
	if got := drain(b.q); len(got) != 1 || !strings.Contains(got[0], "two, again") {
		t.Errorf("a later edit gave %q", got)
	}
}

// newsOnFake runs a bridge on the fake server f whose #news shows the
// public plain feed news, with no rate limit and a join_retry of 1s; extra
// adds keys to the irc section. It returns once the bot is in #news.
func newsOnFake(t *testing.T, f *fakeServer, extra string) (*Bridge, *thoonk.Feed) {
	t.Helper()
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n  join_retry: 1s\n"+
		extra+"  channels: [{name: \"#news\", feeds: [news]}]\n")
	makePublic(b)
	if err := b.hub.Store.Create(context.Background(), "news", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	runBridge(t, b, f)
	registerAndWait(f, b, "#news")
	return b, b.hub.Store.Feed("news")
}

// TestFirstJoinStartsAtTheJournalsEnd: on the bot's first join of a
// channel (no mark yet) nothing from before is posted (but the backlog);
// every change after it is.
func TestFirstJoinStartsAtTheJournalsEnd(t *testing.T) {
	b, feed, tick := newsBridge(t, "")
	ctx := context.Background()
	publishAt(t, feed, tick, "before the join")
	s := testSession(b)
	a := newAnnouncer(b)
	b.joined(s, "#news")
	a.housekeeping(ctx)
	one := publishAt(t, feed, tick, "one")
	a.handle(ctx, journalEvent(t, b, "news", one))
	if got, want := drain(b.q), []string{"PRIVMSG #news :[news] one"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestFirstJoinPostsWhatChangedWhileJoining: on a first join, a change
// made after the JOIN went out but before the server's echo (its event
// arriving while the channel waits, so nobody posts it live) is posted by
// the join's catch-up; what was there before the JOIN is not.
func TestFirstJoinPostsWhatChangedWhileJoining(t *testing.T) {
	b, feed, tick := newsBridge(t, "")
	ctx := context.Background()
	publishAt(t, feed, tick, "before the join")
	s := testSession(b)
	a := newAnnouncer(b)
	a.join(ctx, s, []string{"#news"})
	during := publishAt(t, feed, tick, "while joining")
	a.handle(ctx, journalEvent(t, b, "news", during))
	b.joined(s, "#news")
	a.housekeeping(ctx)
	got := slices.DeleteFunc(drain(b.q), func(l string) bool { return !strings.HasPrefix(l, "PRIVMSG") })
	if want := []string{"PRIVMSG #news :[news] while joining"}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestRefusedSendIsPostedAgain: an announcement the server refuses (404,
// cannot send to channel) is not counted as delivered: after join_retry
// the bot catches the channel up from the last delivered item.
func TestRefusedSendIsPostedAgain(t *testing.T) {
	f := newFakeServer(t)
	f.autoPong = true
	b, feed := newsOnFake(t, f, "  catch_up: 5\n")
	one := publish(t, feed, "one")
	f.expect("PRIVMSG #news :[news] one")
	rev := revOf(t, b, "news", one)
	f.until("saved the mark of \"one\"", func() bool { return savedMark(t, b, "#news", "news") == rev })
	publish(t, feed, "two")
	f.expect("PRIVMSG #news :[news] two")
	f.send(":srv 404 feedbot #news :Cannot send to channel")
	if got := f.expect("PRIVMSG"); got != "PRIVMSG #news :[news] two" {
		t.Errorf("after the refusal the bot sent %q, want the refused item again", got)
	}
	publish(t, feed, "three")
	if got := f.expect("PRIVMSG"); got != "PRIVMSG #news :[news] three" {
		t.Errorf("then the bot sent %q, want the next item", got)
	}
}

// TestRefusedBeforeAnyConfirmation: when the server refuses the bot's
// first lines in a channel before any of them was confirmed, they are all
// posted again after join_retry, from the first join's mark (the
// journal's end when the bot joined).
func TestRefusedBeforeAnyConfirmation(t *testing.T) {
	f := newFakeServer(t) // PINGs go unanswered: nothing is confirmed
	_, feed := newsOnFake(t, f, "  catch_up: 5\n")
	publish(t, feed, "one")
	f.expect("PRIVMSG #news :[news] one")
	publish(t, feed, "two")
	f.expect("PRIVMSG #news :[news] two")
	f.send(":srv 404 feedbot #news :Cannot send to channel")
	for _, want := range []string{"PRIVMSG #news :[news] one", "PRIVMSG #news :[news] two"} {
		if got := f.expect("PRIVMSG"); got != want {
			t.Errorf("after the refusal the bot sent %q, want %q", got, want)
		}
	}
}

// TestLostBeforeAnyConfirmation: a channel whose feed was empty at its
// first join gets the feed's start as its baseline, so a line lost with
// the connection before any line there was confirmed is caught up after
// the reconnect, with what was published meanwhile.
func TestLostBeforeAnyConfirmation(t *testing.T) {
	f := newFakeServer(t) // PINGs go unanswered: nothing is confirmed
	_, feed := newsOnFake(t, f, "")
	publish(t, feed, "one")
	f.expect("PRIVMSG #news :[news] one")
	f.conn.Close()
	f.accept()
	publish(t, feed, "two")
	register(f, "#news")
	if got, want := f.expect("PRIVMSG"), "PRIVMSG #news :2 changes in feed news while I was away"; !strings.HasPrefix(got, want) {
		t.Errorf("after the reconnect the bot sent %q, want %q", got, want)
	}
}

// savedMark returns the catch-up mark stored in Redis for a channel's
// feed: a journal revision ("" when none).
func savedMark(t *testing.T, b *Bridge, channel, feed string) string {
	t.Helper()
	v, _ := b.hub.Store.Client().HGet(context.Background(), "feedbridge.irc.last:"+b.cfg.Server+":"+channel, feed).Result()
	if v != "" && !thoonk.ValidRev(v) {
		t.Fatalf("stored mark %q is not a revision", v)
	}
	return v
}

// revOf returns the revision of an item's last change.
func revOf(t *testing.T, b *Bridge, feed, id string) string {
	t.Helper()
	it, err := b.hub.Store.Item(context.Background(), feed, id)
	if err != nil {
		t.Fatal(err)
	}
	return it.Rev
}

// register plays the server's side of registration and confirms the
// bot's JOIN of channel.
func register(f *fakeServer, channel string) {
	f.t.Helper()
	f.expect("USER")
	f.send(":srv 001 feedbot :Welcome feedbot!~feedbridge@h", ":srv 376 feedbot :End of MOTD")
	f.expect("JOIN " + channel)
	f.send(":feedbot!~feedbridge@h JOIN " + channel)
}

// registerAndWait registers the bot and waits until its JOIN of channel
// has been caught up (the channel has a mark): only a change after that
// is the channel's to announce on a first join (one from before is the
// baseline).
func registerAndWait(f *fakeServer, b *Bridge, channel string) {
	f.t.Helper()
	register(f, channel)
	f.until("caught up its JOIN of "+channel, func() bool {
		b.marks.mu.Lock()
		defer b.marks.mu.Unlock()
		return b.inChannel(channel) && len(b.marks.known[strings.ToLower(channel)]) > 0
	})
}

func publish(t *testing.T, f *thoonk.Feed, item string) string {
	t.Helper()
	r, err := f.Publish(context.Background(), []byte(item), "")
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// publishAt publishes one second later on Redis' clock.
func publishAt(t *testing.T, f *thoonk.Feed, tick func(), item string) string {
	t.Helper()
	tick()
	return publish(t, f, item)
}
