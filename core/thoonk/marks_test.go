package thoonk_test

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

// Readers' marks only move on: an older revision written late changes
// nothing, a newer one replaces, a value that is no revision is replaced,
// and the hash expires after the TTL given.
func TestAdvanceMarksOnlyMoveOn(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, thoonk.StoreOptions{})
		const key = "feedbridge.test.marks"
		thoonktest.Must(t, b.RDB.HSet(ctx, key, "old-format", `{"hint":"1"}`).Err())
		thoonktest.Must(t, s.AdvanceMarks(ctx, key, 0, map[string]string{"a": "1700000000000-5", "b": "1700000000001-0", "old-format": "5-0"}))
		thoonktest.Must(t, s.AdvanceMarks(ctx, key, time.Hour, map[string]string{"a": "1700000000000-4", "b": "1700000000001-1", "c": "not a revision"}))
		got, err := b.RDB.HGetAll(ctx, key).Result()
		thoonktest.Must(t, err)
		want := map[string]string{"a": "1700000000000-5", "b": "1700000000001-1", "old-format": "5-0"}
		if len(got) != len(want) {
			t.Fatalf("marks %v, want %v", got, want)
		}
		for f, v := range want {
			if got[f] != v {
				t.Fatalf("mark %s = %q, want %q (all: %v)", f, got[f], v, got)
			}
		}
		if ttl, _ := b.RDB.PTTL(ctx, key).Result(); ttl <= 0 || ttl > time.Hour {
			t.Fatalf("ttl %s, want about an hour", ttl)
		}
	})
}

// Revs gives each item's last revision, "" for an item without one.
func TestRevs(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		_, err := s.Feed("news").Publish(ctx, []byte("A"), "a")
		thoonktest.Must(t, err)
		_, err = s.Feed("news").Publish(ctx, []byte("B"), "b")
		thoonktest.Must(t, err)
		_, es := readAll(t, s, "news")
		got, err := s.Revs(ctx, "news", "b", "gone", "a")
		thoonktest.Must(t, err)
		if want := []string{es[1].Rev, "", es[0].Rev}; !slices.Equal(got, want) {
			t.Fatalf("revs %q, want %q", got, want)
		}
	})
}

// Reconcile journals the items it finds new in the feed's order: a plain
// feed's oldest first (by real time, whatever unit each writer scored
// in), a sorted feed's in position order.
func TestReconcileJournalsInFeedOrder(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx := thoonktest.Ctx(t)
		s := b.StoreWith(t, journaled)
		thoonktest.Must(t, s.Create(ctx, "news", thoonk.TypeFeed, nil))
		thoonktest.Must(t, s.Create(ctx, "list", thoonk.TypeSorted, nil))
		now := time.Now()
		// written behind the journal's back, newest first: ms, seconds, ms
		for _, w := range []struct {
			id    string
			score float64
		}{{"c", float64(now.UnixMilli())}, {"b", float64(now.Add(-time.Second).Unix())}, {"a", float64(now.Add(-time.Minute).UnixMilli())}} {
			thoonktest.Must(t, b.RDB.ZAdd(ctx, "feed.ids:news", redis.Z{Score: w.score, Member: w.id}).Err())
			thoonktest.Must(t, b.RDB.HSet(ctx, "feed.items:news", w.id, w.id).Err())
		}
		for _, id := range []string{"3", "1", "2"} {
			thoonktest.Must(t, b.RDB.HSet(ctx, "feed.items:list", id, id).Err())
		}
		thoonktest.Must(t, b.RDB.RPush(ctx, "feed.ids:list", "1", "2", "3").Err())
		for feed, want := range map[string][]string{
			"news": {"publish a a", "publish b b", "publish c c"},
			"list": {"publish 1 1 @begin:", "publish 2 2 @1:", "publish 3 3 @2:"},
		} {
			_, err := s.Reconcile(ctx, feed)
			thoonktest.Must(t, err)
			if got, _ := readAll(t, s, feed); !slices.Equal(got, want) {
				t.Fatalf("%s journal %q, want %q", feed, got, want)
			}
		}
	})
}
