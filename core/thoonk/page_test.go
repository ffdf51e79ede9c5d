package thoonk_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/feedbridge/feedbridge/core/thoonk"
	"github.com/feedbridge/feedbridge/core/thoonk/thoonktest"
)

func pageIDs(p thoonk.Page) []string {
	var ids []string
	for _, it := range p.Items {
		ids = append(ids, it.ID)
	}
	return ids
}

func TestPagesPlainFeedNewestFirst(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "f", thoonk.TypeFeed, nil)
		f := s.Feed("f")
		for i := range 7 {
			_, err := f.Publish(ctx, []byte(fmt.Sprint("item", i)), fmt.Sprint(i))
			thoonktest.Must(t, err)
			if i%2 == 0 {
				time.Sleep(2 * time.Millisecond) // some ties in publish time, some not
			}
		}
		p, err := f.Page(ctx, thoonk.PageRequest{Limit: 3})
		thoonktest.Must(t, err)
		if got := pageIDs(p); !slices.Equal(got, []string{"6", "5", "4"}) || p.Total != 7 || !p.HasNext() || p.HasPrev() {
			t.Fatalf("first page %v total %d", got, p.Total)
		}
		if p.Items[0].Published.IsZero() || time.Since(p.Items[0].Published) > time.Minute {
			t.Fatalf("published time %v", p.Items[0].Published)
		}
		c := p.Items[2].Cursor()
		p, _ = f.Page(ctx, thoonk.PageRequest{Limit: 3, After: &c})
		if got := pageIDs(p); !slices.Equal(got, []string{"3", "2", "1"}) || p.Start != 3 {
			t.Fatalf("second page %v start %d", got, p.Start)
		}
		// the cursor survives the removal of its item
		thoonktest.Must(t, f.Retract(ctx, "4"))
		p, _ = f.Page(ctx, thoonk.PageRequest{Limit: 3, After: &c})
		if got := pageIDs(p); !slices.Equal(got, []string{"3", "2", "1"}) {
			t.Fatalf("page after a gone cursor %v", got)
		}
		// an encoded cursor round-trips
		dc, err := thoonk.DecodeCursor(c.Encode())
		thoonktest.Must(t, err)
		if dc != c {
			t.Fatalf("decoded %+v, want %+v", dc, c)
		}
		last := thoonk.Cursor{ID: "1"}
		p, _ = f.Page(ctx, thoonk.PageRequest{Limit: 3, Before: &last})
		if got := pageIDs(p); !slices.Equal(got, []string{"5", "3", "2"}) || p.Start != 1 {
			t.Fatalf("page before 1: %v start %d", got, p.Start)
		}
		p, _ = f.Page(ctx, thoonk.PageRequest{Limit: 2, Offset: 4})
		if got := pageIDs(p); !slices.Equal(got, []string{"1", "0"}) || p.HasNext() {
			t.Fatalf("page at offset 4: %v", got)
		}
		gone := thoonk.Cursor{ID: "nope"}
		if _, err := f.Page(ctx, thoonk.PageRequest{After: &gone}); !errors.Is(err, thoonk.ErrItemNotFound) {
			t.Fatalf("cursor of an unknown id without a hint: %v", err)
		}
	})
}

func TestPagesSortedFeedInPositionOrder(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "s", thoonk.TypeSorted, nil)
		f := s.Sorted("s")
		for range 5 {
			_, err := f.Append(ctx, []byte("x"))
			thoonktest.Must(t, err)
		}
		thoonktest.Must(t, f.Move(ctx, "5", thoonk.Position{Kind: thoonk.PosBegin}))
		p, err := f.Page(ctx, thoonk.PageRequest{Limit: 2})
		thoonktest.Must(t, err)
		if got := pageIDs(p); !slices.Equal(got, []string{"5", "1"}) || !p.Items[0].Published.IsZero() {
			t.Fatalf("first page %v", got)
		}
		c := p.Items[1].Cursor()
		thoonktest.Must(t, f.Retract(ctx, "1"))
		p, _ = f.Page(ctx, thoonk.PageRequest{Limit: 10, After: &c})
		if got := pageIDs(p); !slices.Equal(got, []string{"2", "3", "4"}) {
			t.Fatalf("after a gone cursor %v", got)
		}
	})
}

func TestCursorDecodeRejectsJunk(t *testing.T) {
	for _, tok := range []string{"", "!!!", "YWJj", thoonk.Cursor{ID: "a\nb"}.Encode(), thoonk.Cursor{ID: "x", Hint: "zz"}.Encode()} {
		if _, err := thoonk.DecodeCursor(tok); !errors.Is(err, thoonk.ErrInvalid) {
			t.Errorf("DecodeCursor(%q): %v", tok, err)
		}
	}
}

// A cursor stays where its item was when the cursor was made: an edit
// moves the item to the front of a plain feed, and a long poll "newer than
// the cursor" must then see it (and everything published since).
func TestCursorSurvivesAnEditOfItsItem(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "f", thoonk.TypeFeed, nil)
		f := s.Feed("f")
		_, _ = f.Publish(ctx, []byte("old"), "old")
		time.Sleep(2 * time.Millisecond)
		_, _ = f.Publish(ctx, []byte("x"), "x")
		p, _ := f.Page(ctx, thoonk.PageRequest{Limit: 1})
		cx := p.Items[0].Cursor() // x, newest
		time.Sleep(2 * time.Millisecond)
		_, _ = f.Publish(ctx, []byte("y"), "y")
		time.Sleep(2 * time.Millisecond)
		_, _ = f.Publish(ctx, []byte("x edited"), "x")
		newer, err := f.Page(ctx, thoonk.PageRequest{Before: &cx})
		thoonktest.Must(t, err)
		if got := pageIDs(newer); !slices.Equal(got, []string{"x", "y"}) {
			t.Fatalf("newer than the cursor: %v, want [x y]", got)
		}
		older, _ := f.Page(ctx, thoonk.PageRequest{After: &cx})
		if got := pageIDs(older); !slices.Equal(got, []string{"old"}) {
			t.Fatalf("older than the cursor: %v, want [old]", got)
		}
	})
}

// TestPageJoin: a page read returns each item's companion fields from a
// caller's hash, in one call, "" where a field is missing.
func TestPageJoin(t *testing.T) {
	thoonktest.Each(t, func(t *testing.T, b *thoonktest.Backend) {
		ctx, s := thoonktest.Ctx(t), b.Store
		b.Create(t, "f", thoonk.TypeFeed, nil)
		for _, id := range []string{"a", "b", "c"} {
			_, err := s.Feed("f").Publish(ctx, []byte("x"+id), id)
			thoonktest.Must(t, err)
		}
		thoonktest.Must(t, b.RDB.HSet(ctx, "extra:f", "p:a", "1", "u:a", "2", "u:c", "3").Err())
		p, err := s.Page(ctx, "f", thoonk.PageRequest{Limit: 10, Join: &thoonk.PageJoin{Key: "extra:f", Prefixes: []string{"p:", "u:"}}})
		thoonktest.Must(t, err)
		got := map[string][]string{}
		for _, it := range p.Items {
			got[it.ID] = it.Joined
			if string(it.Data) != "x"+it.ID {
				t.Errorf("item %s data %q", it.ID, it.Data)
			}
		}
		if fmt.Sprint(got) != "map[a:[1 2] b:[ ] c:[ 3]]" {
			t.Fatalf("joined %v", got)
		}
	})
}
