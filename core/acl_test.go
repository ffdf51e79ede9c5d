package core_test

import (
	"testing"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func TestACL(t *testing.T) {
	acl := core.MustACL(
		core.ACLRule{Actors: []string{"*"}, Feeds: []string{"*"}, Allow: []string{"read"}},
		core.ACLRule{Actors: []string{"xmpp:*@example.org"}, Feeds: []string{"team:*"}, Allow: []string{"publish", "edit"}},
		core.ACLRule{Actors: []string{"irc:*!*@trusted.host", "rest:ops"}, Feeds: []string{"deploys"}, Allow: []string{"*"}},
	)
	alice := core.Actor{Protocol: "xmpp", ID: "alice@example.org"}
	mallory := core.Actor{Protocol: "xmpp", ID: "mallory@example.org.evil"}
	for _, tc := range []struct {
		actor    core.Actor
		feed, op string
		want     bool
	}{
		{core.Actor{Protocol: "rest", ID: core.Anonymous}, "news", "read", true},
		{core.Actor{Protocol: "rest", ID: core.Anonymous}, "news", "publish", false},
		{alice, "team:1", "publish", true},
		{alice, "team:1", "retract", false},
		{alice, "news", "publish", false},
		{mallory, "team:1", "publish", false},
		{core.Actor{Protocol: "irc", ID: "bob!~b@trusted.host"}, "deploys", "ship", true},
		{core.Actor{Protocol: "irc", ID: "bob!~b@untrusted.host"}, "deploys", "ship", false},
		{core.Actor{Protocol: "rest", ID: "ops"}, "deploys", "retract", true},
		{core.Actor{Protocol: "rest", ID: "ops"}, "other", "retract", false},
	} {
		if got := acl.Allowed(tc.actor, tc.feed, tc.op); got != tc.want {
			t.Errorf("%s %s on %s = %v, want %v", tc.actor, tc.op, tc.feed, got, tc.want)
		}
	}
	var none *core.ACL
	if none.Allowed(alice, "news", "read") {
		t.Error("a nil ACL allowed something")
	}
}

func TestFeedFilter(t *testing.T) {
	root, _ := core.ParseYAML("f", nil)
	f := core.FeedFilter{Include: []string{"team:*", "news"}, Exclude: []string{"team:secret:*"}}
	thoonktest.Must(t, f.Compile(root, "feeds"))
	for name, want := range map[string]bool{"news": true, "team:1:tasks": true, "team:secret:x": false, "other": false} {
		if f.Allows(name) != want {
			t.Errorf("Allows(%q) = %v", name, !want)
		}
	}
	var all *core.FeedFilter
	if !all.Allows("x") {
		t.Error("a nil filter must allow everything")
	}
}

// The bridge's own job feeds are never exposed by a pattern, whatever
// their names (hash tags included), only when named literally.
func TestHubHidesTheActionQueues(t *testing.T) {
	root, _ := core.ParseYAML("f", nil)
	all := &core.FeedFilter{Include: []string{"*"}, Exclude: []string{"feedbridge.*"}}
	thoonktest.Must(t, all.Compile(root, "feeds"))
	named := &core.FeedFilter{Include: []string{"*", "{feedbridge}.actions"}}
	thoonktest.Must(t, named.Compile(root, "own"))
	hub := &core.Hub{Feeds: all, Internal: []string{"{feedbridge}.actions", "{feedbridge}.custom"}}
	for _, tc := range []struct {
		own  *core.FeedFilter
		feed string
		want bool
	}{
		{nil, "{feedbridge}.actions", false},
		{nil, "{feedbridge}.custom", false},
		{nil, "{team}:news", true},
		{named, "{feedbridge}.actions", true},
		{named, "{feedbridge}.custom", false},
	} {
		if got := hub.Exposed(tc.own).Allows(tc.feed); got != tc.want {
			t.Errorf("own %v: Allows(%q) = %v", tc.own != nil, tc.feed, got)
		}
	}
}
