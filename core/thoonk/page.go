package thoonk

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// TypeItems names the types that hold readable items, for error messages.
const TypeItems FeedType = "feed or sorted_feed"

// Paging limits.
const (
	// DefaultPageSize is the page size when a request gives none.
	DefaultPageSize = 20
	// MaxPageSize is the largest page served in one call.
	MaxPageSize = 1000
)

// Cursor marks a place in a feed's display order: just after (or before)
// an item. It survives the item's removal: Hint (the item's score on plain
// feeds, its index on sorted feeds) places the cursor where the item was.
type Cursor struct {
	ID   string
	Hint string
}

// Encode returns the cursor as an opaque URL-safe token.
func (c Cursor) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.Hint + "\x00" + c.ID))
}

// DecodeCursor parses a token made by Cursor.Encode.
func DecodeCursor(token string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Cursor{}, fmt.Errorf("cursor: not a cursor token: %w", ErrInvalid)
	}
	hint, id, ok := strings.Cut(string(b), "\x00")
	if !ok {
		return Cursor{}, fmt.Errorf("cursor: not a cursor token: %w", ErrInvalid)
	}
	if err := ValidateID(id); err != nil {
		return Cursor{}, fmt.Errorf("cursor: %w", err)
	}
	if hint != "" {
		if _, err := strconv.ParseFloat(hint, 64); err != nil {
			return Cursor{}, fmt.Errorf("cursor: bad position: %w", ErrInvalid)
		}
	}
	return Cursor{ID: id, Hint: hint}, nil
}

// PageRequest selects a page. At most one of After, Before and Offset is
// used, in that order of precedence; with none the page starts at the first
// item in display order.
type PageRequest struct {
	// Limit is the page size: 0 means DefaultPageSize, more than
	// MaxPageSize is clamped to it.
	Limit int
	// After starts the page just after the cursor.
	After *Cursor
	// Before ends the page just before the cursor.
	Before *Cursor
	// Offset starts the page at this index.
	Offset int64
	// Join, when set, reads companion data of each item in the same
	// round trip (see PageJoin).
	Join *PageJoin
}

// PageJoin names a hash where a caller keeps data per item (on Redis
// Cluster, in the feed's slot: its name carries the feed's hash tag) and
// the field prefixes to read from it for each item of a page: field
// prefix + item id. The values come back in Item.Joined, in the order of
// Prefixes ("" where a field is missing).
type PageJoin struct {
	Key      string
	Prefixes []string
}

// Page is one page of a feed in display order: newest first on plain feeds,
// position order on sorted feeds.
type Page struct {
	Items []Item
	// Total is the number of items in the feed.
	Total int64
	// Start is the index of the first item of the page (also when empty).
	Start int64
	// Type is the feed's type.
	Type FeedType
}

// HasNext reports whether items follow the page.
func (p Page) HasNext() bool { return p.Start+int64(len(p.Items)) < p.Total }

// HasPrev reports whether items precede the page.
func (p Page) HasPrev() bool { return p.Start > 0 }

// Page reads one page of a plain or sorted feed in display order, in one
// round trip. A cursor whose item is gone and which carries no hint fails
// with ErrItemNotFound.
func (s *Store) Page(ctx context.Context, feed string, req PageRequest) (Page, error) {
	keys, args, stride, err := s.pageArgs(feed, req)
	if err != nil {
		return Page{}, err
	}
	vals, err := s.run(ctx, scripts.page, keys, args...).Slice()
	return decodePage(feed, vals, err, stride)
}

// PageIn queues the page read on the caller's pipeline, so that it shares
// one round trip with the caller's own reads, and returns the function
// that gives the page once the pipeline ran. (When Redis does not hold
// the script yet, after a restart say, that function reads the page again
// on its own, loading the script.)
func (s *Store) PageIn(ctx context.Context, pipe redis.Pipeliner, feed string, req PageRequest) func() (Page, error) {
	keys, args, stride, err := s.pageArgs(feed, req)
	if err != nil {
		return func() (Page, error) { return Page{}, err }
	}
	cmd := scripts.page.EvalSha(ctx, pipe, keys, args...)
	return func() (Page, error) {
		vals, err := cmd.Slice()
		if isNoScript(err) {
			return s.Page(ctx, feed, req)
		}
		return decodePage(feed, vals, err, stride)
	}
}

// pageArgs checks a page request and returns the page script's keys and
// arguments, and the number of reply elements per item.
func (s *Store) pageArgs(feed string, req PageRequest) ([]string, []any, int, error) {
	if err := s.validFeed(feed); err != nil {
		return nil, nil, 0, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	mode, id, hint := "first", "", ""
	switch {
	case req.After != nil:
		mode, id, hint = "after", req.After.ID, req.After.Hint
	case req.Before != nil:
		mode, id, hint = "before", req.Before.ID, req.Before.Hint
	case req.Offset > 0:
		mode, hint = "index", strconv.FormatInt(req.Offset, 10)
	}
	if id != "" || mode == "after" || mode == "before" {
		if err := ValidateID(id); err != nil {
			return nil, nil, 0, fmt.Errorf("page cursor: %w", err)
		}
	}
	keys, args := readKeys(feed), []any{mode, id, hint, limit}
	stride := 4 // id, score, item, revision
	if j := req.Join; j != nil && len(j.Prefixes) > 0 {
		keys = append(keys, j.Key)
		for _, p := range j.Prefixes {
			args = append(args, p)
		}
		stride += len(j.Prefixes)
	}
	return keys, args, stride, nil
}

// decodePage turns the page script's reply into a Page.
func decodePage(feed string, vals []any, err error, stride int) (Page, error) {
	if err != nil {
		return Page{}, scriptError(err, feed, TypeItems, "page")
	}
	if len(vals) < 3 {
		return Page{}, fmt.Errorf("page %q: short reply", feed)
	}
	p := Page{Total: vals[0].(int64), Start: vals[1].(int64), Type: FeedType(stringOf(vals[2]))}
	rest := vals[3:]
	p.Items = make([]Item, 0, len(rest)/stride)
	for i := 0; i+stride-1 < len(rest); i += stride {
		it := Item{ID: stringOf(rest[i]), Index: p.Start + int64(i/stride), Rev: stringOf(rest[i+3])}
		data := bytesOf(rest[i+2])
		if data == nil {
			continue // id without item: a writer outside the schema's steps
		}
		it.Data = data
		if stride > 4 {
			it.Joined = make([]string, stride-4)
			for j := range it.Joined {
				it.Joined[j] = stringOf(rest[i+4+j])
			}
		}
		if sc := stringOf(rest[i+1]); sc != "" {
			f, err := parseScore(sc)
			if err != nil {
				return Page{}, fmt.Errorf("page %q: %w", feed, err)
			}
			it.Published = ScoreTime(f)
			it.hint = sc
		} else {
			it.hint = strconv.FormatInt(it.Index, 10)
		}
		p.Items = append(p.Items, it)
	}
	return p, nil
}
