package irc

import (
	"context"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// TestFeedsSkipsMalformed: !feeds lists the good feeds when others are
// malformed (it answered "cannot list feeds" for everybody before), and
// !items on a malformed feed says so.
func TestFeedsSkipsMalformed(t *testing.T) {
	f := newFakeServer(t)
	b := testBridge(t, "  enabled: true\n  server: "+f.ln.Addr().String()+"\n  nick: feedbot\n  rate: {interval: 0s}\n")
	b.hub.ACL = core.MustACL(core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}})
	b.hub.Feeds = &core.FeedFilter{Include: []string{"*"}}
	if err := b.hub.Feeds.Compile(&core.Section{File: "test"}, "feeds"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.hub.Store.Create(ctx, "good", thoonk.TypeFeed, nil); err != nil {
		t.Fatal(err)
	}
	thoonktest.Malform(t, b.hub.Store.Client(), "bad-")
	registerWithAccountTag(t, b, f)
	f.send(":al!~a@host PRIVMSG feedbot :feeds")
	if got := f.next(); got != "NOTICE al :feeds: good (0)" {
		t.Errorf("!feeds: %q", got)
	}
	f.send(":al!~a@host PRIVMSG feedbot :items bad-ids-list")
	if got := f.next(); !strings.Contains(got, "malformed") {
		t.Errorf("!items on a malformed feed: %q", got)
	}
}
