package thoonk

import (
	"context"
	"fmt"
	"strings"
)

// PositionKind says where a sorted-feed item goes.
type PositionKind int

// The four position forms of the schema.
const (
	// PosEnd is ":end", the last position.
	PosEnd PositionKind = iota
	// PosBegin is "begin:", the first position.
	PosBegin
	// PosBefore is ":rel", just before item rel.
	PosBefore
	// PosAfter is "rel:", just after item rel.
	PosAfter
)

// Position is a place in a sorted feed.
type Position struct {
	Kind PositionKind
	// Rel is the item the position is relative to (PosBefore, PosAfter).
	Rel string
}

// String renders the schema's position string.
func (p Position) String() string {
	switch p.Kind {
	case PosBegin:
		return "begin:"
	case PosBefore:
		return ":" + p.Rel
	case PosAfter:
		return p.Rel + ":"
	}
	return ":end"
}

// ParsePosition parses ":end", "begin:", ":rel" and "rel:".
func ParsePosition(s string) (Position, error) {
	var p Position
	switch {
	case s == ":end":
		return Position{Kind: PosEnd}, nil
	case s == "begin:":
		return Position{Kind: PosBegin}, nil
	case strings.HasPrefix(s, ":"):
		p = Position{Kind: PosBefore, Rel: s[1:]}
	case strings.HasSuffix(s, ":"):
		p = Position{Kind: PosAfter, Rel: s[:len(s)-1]}
	default:
		return Position{}, fmt.Errorf("position %q: want :end, begin:, :ID or ID: : %w", s, ErrInvalid)
	}
	if err := ValidateID(p.Rel); err != nil {
		return Position{}, fmt.Errorf("position %q: %w", s, err)
	}
	return p, nil
}

func (p Position) mode() string {
	switch p.Kind {
	case PosBegin:
		return "begin"
	case PosBefore:
		return "before"
	case PosAfter:
		return "after"
	}
	return "end"
}

func (p Position) validate() error {
	if p.Kind == PosBefore || p.Kind == PosAfter {
		return ValidateID(p.Rel)
	}
	if p.Kind != PosEnd && p.Kind != PosBegin {
		return fmt.Errorf("position kind %d: %w", p.Kind, ErrInvalid)
	}
	return nil
}

// SortedFeed is a handle on a manually ordered feed (type "sorted_feed").
type SortedFeed struct{ items }

// Sorted returns a handle on a sorted feed; a bad name is reported by every operation.
func (s *Store) Sorted(name string) *SortedFeed { return &SortedFeed{newItems(s, name)} }

// Append adds an item at the end and returns its new id.
func (f *SortedFeed) Append(ctx context.Context, item []byte) (string, error) {
	return f.Insert(ctx, item, Position{Kind: PosEnd})
}

// Prepend adds an item at the beginning and returns its new id.
func (f *SortedFeed) Prepend(ctx context.Context, item []byte) (string, error) {
	return f.Insert(ctx, item, Position{Kind: PosBegin})
}

// PublishBefore adds an item just before item rel and returns its new id.
func (f *SortedFeed) PublishBefore(ctx context.Context, rel string, item []byte) (string, error) {
	return f.Insert(ctx, item, Position{Kind: PosBefore, Rel: rel})
}

// PublishAfter adds an item just after item rel and returns its new id.
func (f *SortedFeed) PublishAfter(ctx context.Context, rel string, item []byte) (string, error) {
	return f.Insert(ctx, item, Position{Kind: PosAfter, Rel: rel})
}

// Insert adds an item at pos, announcing it on feed.publish then
// feed.position, and returns its new id (from feed.idincr).
func (f *SortedFeed) Insert(ctx context.Context, item []byte, pos Position) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	if err := pos.validate(); err != nil {
		return "", err
	}
	id, err := f.s.run(ctx, scripts.sortedInsert, f.k.feed(), f.name, f.s.jmax, f.s.jitem,
		pos.mode(), pos.Rel, item).Text()
	if err != nil {
		return "", scriptError(err, f.name, TypeSorted, "insert")
	}
	return id, nil
}

// Edit replaces an existing item's payload and announces it on feed.publish.
func (f *SortedFeed) Edit(ctx context.Context, id string, item []byte) error {
	if f.err != nil {
		return f.err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	err := f.s.run(ctx, scripts.sortedEdit, f.k.feed(), f.name, f.s.jmax, f.s.jitem, id, item).Err()
	return scriptError(err, f.name, TypeSorted, "edit")
}

// Move puts an existing item at pos and announces it on feed.position.
func (f *SortedFeed) Move(ctx context.Context, id string, pos Position) error {
	if f.err != nil {
		return f.err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := pos.validate(); err != nil {
		return err
	}
	err := f.s.run(ctx, scripts.sortedMove, f.k.feed(), f.name, f.s.jmax, f.s.jitem, id, pos.mode(), pos.Rel).Err()
	return scriptError(err, f.name, TypeSorted, "move")
}

// Retract removes an item and announces it on feed.retract.
func (f *SortedFeed) Retract(ctx context.Context, id string) error {
	if f.err != nil {
		return f.err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	err := f.s.run(ctx, scripts.sortedRetract, f.k.feed(), f.name, f.s.jmax, f.s.jitem, id).Err()
	return scriptError(err, f.name, TypeSorted, "retract")
}
