package atom

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func doc(body string) *rendered { return &rendered{body: []byte(body)} }

func TestCacheKeepsUntilInvalidated(t *testing.T) {
	c := newCache(1 << 20)
	ctx := context.Background()
	renders := 0
	render := func() (*rendered, error) { renders++; return doc("v"), nil }
	for range 3 {
		if _, err := c.load(ctx, "f", "atom", render); err != nil {
			t.Fatal(err)
		}
	}
	c.invalidate("g") // another feed
	_, _ = c.load(ctx, "f", "atom", render)
	if renders != 1 {
		t.Fatalf("%d renders, want 1", renders)
	}
	c.invalidate("f")
	_, _ = c.load(ctx, "f", "atom", render)
	c.reset()
	_, _ = c.load(ctx, "f", "atom", render)
	if renders != 3 {
		t.Fatalf("%d renders after invalidate and reset, want 3", renders)
	}
}

func TestCacheDropsRenderRacingAChange(t *testing.T) {
	c := newCache(1 << 20)
	ctx := context.Background()
	_, _ = c.load(ctx, "f", "atom", func() (*rendered, error) {
		c.invalidate("f") // the feed changed while this render read it
		return doc("stale"), nil
	})
	got, _ := c.load(ctx, "f", "atom", func() (*rendered, error) { return doc("fresh"), nil })
	if string(got.body) != "fresh" {
		t.Fatal("a render that raced a change was kept")
	}
}

func TestCacheRendersOnceForConcurrentReaders(t *testing.T) {
	c := newCache(1 << 20)
	var renders atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			r, err := c.load(context.Background(), "f", "atom", func() (*rendered, error) {
				renders.Add(1)
				<-release
				return doc("v"), nil
			})
			if err != nil || string(r.body) != "v" {
				t.Error(r, err)
			}
		})
	}
	for renders.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other readers queue up (proves they do not render)
	close(release)
	wg.Wait()
	if n := renders.Load(); n != 1 {
		t.Fatalf("%d renders for 20 concurrent readers", n)
	}
}

func TestCacheStaysWithinItsBound(t *testing.T) {
	c := newCache(100)
	for _, f := range []string{"a", "b", "c", "d"} {
		_, _ = c.load(context.Background(), f, "atom", func() (*rendered, error) { return doc("0123456789012345678901234567890123456789"), nil })
		if c.used > c.max {
			t.Fatalf("cache holds %d bytes, bound %d", c.used, c.max)
		}
	}
	_, _ = c.load(context.Background(), "big", "atom", func() (*rendered, error) { return &rendered{body: make([]byte, 101)}, nil })
	if c.feeds["big"] != nil || c.used > c.max {
		t.Fatal("a document larger than the whole cache was kept")
	}
	expired := &rendered{body: []byte("x"), expires: time.Now().Add(-time.Second)}
	_, _ = c.load(context.Background(), "e", "atom", func() (*rendered, error) { return expired, nil })
	if r, _ := c.load(context.Background(), "e", "atom", func() (*rendered, error) { return doc("new"), nil }); string(r.body) != "new" {
		t.Fatal("an expired document was served")
	}
}

// One feed's many pages (every cursor is a variant) must not grow the
// cache past its bound either.
func TestCacheBoundHoldsForOneFeedsVariants(t *testing.T) {
	c := newCache(100)
	for i := range 10 {
		variant := fmt.Sprintf("atom?after=%d", i)
		r, err := c.load(context.Background(), "f", variant, func() (*rendered, error) { return doc("0123456789012345678901234567890123456789"), nil })
		if err != nil || string(r.body) == "" {
			t.Fatal(r, err)
		}
		if c.used > c.max {
			t.Fatalf("after %d pages of one feed the cache holds %d bytes, bound %d", i+1, c.used, c.max)
		}
	}
	if r, _ := c.load(context.Background(), "f", "atom?after=9", func() (*rendered, error) { return doc("again"), nil }); string(r.body) == "again" {
		t.Fatal("the newest page was evicted instead of older ones")
	}
}
