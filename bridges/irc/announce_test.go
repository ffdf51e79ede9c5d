package irc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core"
)

// TestCatchUpSummaryCountsEveryItem: a catch-up that meets a channel lane
// already counting dropped items (a burst, then a resync) adds every
// missed item to the summary, not one.
func TestCatchUpSummaryCountsEveryItem(t *testing.T) {
	b := testBridge(t, "  enabled: true\n  server: 127.0.0.1:6667\n  queue_lines: 4\n  links: {feed: \"\"}\n  channels: [{name: \"#news\", feeds: [news]}]\n")
	ctx := context.Background()
	st := b.hub.Store
	if err := st.Create(ctx, "news", core.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	seen, err := st.Feed("news").Publish(ctx, []byte("seen"), "")
	if err != nil {
		t.Fatal(err)
	}
	b.marks.written(mark{channel: "#news", feed: "news", cur: core.Cursor{ID: seen.ID}})
	time.Sleep(2 * time.Millisecond) // the missed items come strictly later (items of one millisecond tie)
	for i := range 30 {
		if _, err := st.Feed("news").Publish(ctx, []byte(fmt.Sprint("missed ", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	b.hub.Feeds = nil // every feed exposed
	b.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	s := testSession(b)
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
