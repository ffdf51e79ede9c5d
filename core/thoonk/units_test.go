package thoonk_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
	"github.com/redis/go-redis/v9"
)

// On a feed thoonk.py writes (scores in seconds) the store writes seconds
// too, so order and max_length trimming stay right for both writers.
func TestPublishFollowsTheFeedsScoreUnit(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "py", thoonk.TypeFeed, map[string]string{"max_length": "3"})
		var want []string
		for i := range 5 {
			id := "s" + strconv.Itoa(i)
			var err error
			if i%2 == 0 {
				_, err = thoonktest.PyPublish(ctx, b.RDB, "py", id, []byte(id))
			} else {
				_, err = s.Feed("py").Publish(ctx, []byte(id), id)
			}
			thoonktest.Must(t, err)
			want = append(want, id)
			time.Sleep(3 * time.Millisecond)
		}
		for _, z := range b.RDB.ZRangeWithScores(ctx, "feed.ids:py", 0, -1).Val() {
			if z.Score > 1e11 {
				t.Fatalf("%s scored %v: milliseconds on a feed scored in seconds", z.Member, z.Score)
			}
		}
		// the newest three by real time, newest first
		p, err := s.Page(ctx, "py", thoonk.PageRequest{})
		thoonktest.Must(t, err)
		var got []string
		for _, it := range p.Items {
			got = append(got, it.ID)
		}
		if !slices.Equal(got, []string{"s4", "s3", "s2"}) {
			t.Fatalf("page %v", got)
		}
		// a feed declared score_unit: s gets seconds from its first item
		b.Create(t, "declared", thoonk.TypeFeed, map[string]string{"score_unit": "s"})
		_, _ = s.Feed("declared").Publish(ctx, []byte("x"), "x")
		if sc := b.RDB.ZScore(ctx, "feed.ids:declared", "x").Val(); sc > 1e11 || sc < 1e9 {
			t.Fatalf("score %v on a feed declared in seconds", sc)
		}
	})
}

// A feed that already holds both units (milliseconds first, thoonk.py's
// seconds later) is shown newest first by real time, paged without gaps
// or repeats, and trimmed oldest first by real time.
func TestMixedUnitFeedsOrderByRealTime(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "mixed", thoonk.TypeFeed, nil)
		base := time.Now().Add(-time.Hour)
		var byTime []string // oldest first
		for i := range 12 {
			id := "m" + strconv.Itoa(i)
			at := base.Add(time.Duration(i) * time.Second)
			score := float64(at.UnixMilli())
			if i%3 == 1 {
				score = float64(at.UnixMicro()) / 1e6 // seconds, as thoonk.py
			}
			b.RDB.ZAdd(ctx, "feed.ids:mixed", redisZ(score, id))
			b.RDB.HSet(ctx, "feed.items:mixed", id, id)
			byTime = append(byTime, id)
		}
		newest := slices.Clone(byTime)
		slices.Reverse(newest)
		var got []string
		req := thoonk.PageRequest{Limit: 5}
		for {
			p, err := s.Page(ctx, "mixed", req)
			thoonktest.Must(t, err)
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			if !p.HasNext() {
				break
			}
			c := p.Items[len(p.Items)-1].Cursor()
			req = thoonk.PageRequest{Limit: 5, After: &c}
		}
		if !slices.Equal(got, newest) {
			t.Fatalf("pages\n got %v\nwant %v", got, newest)
		}
		if ids, _ := s.Feed("mixed").IDs(ctx); !slices.Equal(ids, byTime) {
			t.Fatalf("ids %v", ids)
		}
		it, err := s.Feed("mixed").Item(ctx, "m4")
		thoonktest.Must(t, err)
		if it.Index != 7 {
			t.Fatalf("index of m4 = %d, want 7", it.Index)
		}
		// trimming to 10 removes the three oldest by real time
		thoonktest.Must(t, s.SetConfig(ctx, "mixed", map[string]string{"max_length": "10"}))
		_, err = s.Feed("mixed").Publish(ctx, []byte("new"), "new")
		thoonktest.Must(t, err)
		ids, _ := s.Feed("mixed").IDs(ctx)
		if !slices.Equal(ids, append(slices.Clone(byTime[3:]), "new")) {
			t.Fatalf("after trimming: %v", ids)
		}
	})
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
