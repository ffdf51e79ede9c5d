package atom

import (
	"context"
	"sync"
	"time"
)

// rendered is one encoded document with its validators.
type rendered struct {
	body     []byte
	etag     string // strong: a hash of body
	modified time.Time
	ctype    string
	// expires is when the document goes stale by itself (its oldest
	// tombstone's end); zero means only a change event ends it.
	expires time.Time
}

// indexKey is the discovery listing's slot in the cache; no feed has an
// empty name.
const indexKey = ""

// cache keeps rendered documents per feed until the feed's next change
// event. Its memory is bounded by max bytes; when full, whole feeds chosen
// at random are evicted, then the feed's other documents. Concurrent
// requests for a document being rendered wait for that render instead of
// starting their own, so a burst of readers after a change costs one
// render.
type cache struct {
	max int

	mu    sync.Mutex
	seq   uint64 // source of generations, never reused
	used  int
	feeds map[string]*feedCache
}

// feedCache holds one feed's documents, by variant (format and query).
type feedCache struct {
	gen     uint64 // changes on every invalidation
	docs    map[string]*rendered
	pending map[string]*flight
	size    int
}

// flight is a render in progress that other requests may wait for.
type flight struct {
	gen  uint64
	done chan struct{}
	r    *rendered
	err  error
}

func newCache(max int) *cache {
	return &cache{max: max, feeds: map[string]*feedCache{}}
}

// peek returns the cached document, or nil when there is none (or it
// expired).
func (c *cache) peek(feed, variant string) *rendered {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.feeds[feed].fresh(variant)
}

// fresh returns the kept document of a variant unless it expired; fc may
// be nil.
func (fc *feedCache) fresh(variant string) *rendered {
	if fc == nil {
		return nil
	}
	if r := fc.docs[variant]; r != nil && (r.expires.IsZero() || time.Now().Before(r.expires)) {
		return r
	}
	return nil
}

// load returns the cached document, or renders it once for all concurrent
// callers and keeps it unless the feed changed meanwhile.
func (c *cache) load(ctx context.Context, feed, variant string, render func() (*rendered, error)) (*rendered, error) {
	if c.max == 0 {
		return render()
	}
	c.mu.Lock()
	fc := c.feeds[feed]
	if fc == nil {
		c.seq++
		fc = &feedCache{gen: c.seq, docs: map[string]*rendered{}, pending: map[string]*flight{}}
		c.feeds[feed] = fc
	}
	if r := fc.fresh(variant); r != nil {
		c.mu.Unlock()
		return r, nil
	}
	if f := fc.pending[variant]; f != nil && f.gen == fc.gen {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.r, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{gen: fc.gen, done: make(chan struct{})}
	fc.pending[variant] = f
	c.mu.Unlock()

	f.r, f.err = render()
	close(f.done)

	c.mu.Lock()
	defer c.mu.Unlock()
	if fc.pending[variant] == f {
		delete(fc.pending, variant)
	}
	if f.err == nil && c.feeds[feed] == fc && fc.gen == f.gen && len(f.r.body) <= c.max {
		if old := fc.docs[variant]; old != nil {
			fc.size -= len(old.body)
			c.used -= len(old.body)
		}
		fc.docs[variant] = f.r
		fc.size += len(f.r.body)
		c.used += len(f.r.body)
		c.evict(feed, variant)
	}
	if len(fc.docs) == 0 && len(fc.pending) == 0 && c.feeds[feed] == fc {
		delete(c.feeds, feed)
	}
	return f.r, f.err
}

// evict drops other feeds' documents until the cache fits, then the other
// variants (pages, formats) of feed keep, so that only the document just
// stored is sure to stay; c.mu is held.
func (c *cache) evict(keep, variant string) {
	for name, fc := range c.feeds {
		if c.used <= c.max {
			return
		}
		if name != keep {
			c.used -= fc.size
			delete(c.feeds, name)
		}
	}
	fc := c.feeds[keep]
	for v, r := range fc.docs {
		if c.used <= c.max {
			return
		}
		if v != variant {
			fc.size -= len(r.body)
			c.used -= len(r.body)
			delete(fc.docs, v)
		}
	}
}

// invalidate drops a feed's documents; renders in progress are not kept.
func (c *cache) invalidate(feed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fc := c.feeds[feed]; fc != nil {
		c.used -= fc.size
		c.seq++
		fc.gen, fc.size, fc.docs = c.seq, 0, map[string]*rendered{}
	}
}

// reset drops every document; renders in progress are not kept.
func (c *cache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.feeds, c.used = map[string]*feedCache{}, 0
}
