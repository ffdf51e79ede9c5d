package thoonk

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"
)

// Item is one item of a plain or sorted feed.
type Item struct {
	// ID is the item's id.
	ID string
	// Data is the item's payload, opaque bytes.
	Data []byte
	// Published is the time of the item's last publish or edit on plain
	// feeds; zero on sorted feeds, which keep no times.
	Published time.Time
	// Index is the item's position in display order (0 = first shown).
	Index int64
	// Rev is the journal revision of the item's last change (the id of its
	// journal entry), when the feed is journaled; see Journal.
	Rev string
	// Joined holds the companion data a page read asked for
	// (PageRequest.Join), in the order of its prefixes.
	Joined []string
	// hint places a cursor after this item even once it is gone.
	hint string
}

// Cursor returns a cursor that pages onward from this item.
func (it Item) Cursor() Cursor { return Cursor{ID: it.ID, Hint: it.hint} }

// ContentSum returns a 64-bit FNV-1a hash of an item's payload, by which
// adapters tell whether content they handled has changed since.
func ContentSum(data []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(data)
	return h.Sum64()
}

// items is the read side shared by plain and sorted feeds.
type items struct {
	s    *Store
	name string
	k    keys
	err  error // name validation, reported by every operation
}

func newItems(s *Store, name string) items {
	return items{s: s, name: name, k: feedKeys(name), err: s.validFeed(name)}
}

// Name returns the feed's name.
func (f *items) Name() string { return f.name }

func (f *items) readKeys() []string { return []string{f.k.config, f.k.ids, f.k.items, f.k.revs} }

// IDs returns every item id in the feed's order: oldest first for plain
// feeds (the reference libraries' order), position order for sorted feeds.
func (f *items) IDs(ctx context.Context) ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	ids, err := f.s.run(ctx, scripts.read, f.readKeys(), "ids").StringSlice()
	if err != nil {
		return nil, scriptError(err, f.name, TypeItems, "ids")
	}
	return ids, nil
}

// Get returns one item's payload, or an error wrapping ErrItemNotFound.
func (f *items) Get(ctx context.Context, id string) ([]byte, error) {
	got, err := f.GetMany(ctx, id)
	if err != nil {
		return nil, err
	}
	if got[0] == nil {
		return nil, fmt.Errorf("get %q in %q: %w", id, f.name, ErrItemNotFound)
	}
	return got[0], nil
}

// Item returns one item with its publish time (plain feeds) and its index
// in display order, in one round trip; a missing id is an error wrapping
// ErrItemNotFound.
func (f *items) Item(ctx context.Context, id string) (Item, error) {
	if f.err != nil {
		return Item{}, f.err
	}
	if err := ValidateID(id); err != nil {
		return Item{}, err
	}
	vals, err := f.s.run(ctx, scripts.read, f.readKeys(), "item", id).Slice()
	if err != nil {
		return Item{}, scriptError(err, f.name, TypeItems, "item")
	}
	it := Item{ID: id, Data: bytesOf(vals[0]), Index: -1, Rev: stringOf(vals[3])}
	if n, ok := vals[2].(int64); ok {
		it.Index = n
	}
	if sc := stringOf(vals[1]); sc != "" {
		f, err := parseScore(sc)
		if err != nil {
			return Item{}, err
		}
		it.Published, it.hint = ScoreTime(f), sc
	} else if it.Index >= 0 {
		it.hint = strconv.FormatInt(it.Index, 10)
	}
	return it, nil
}

// maxBatch bounds the ids sent to one script call (Lua's unpack limit is
// about 8,000).
const maxBatch = 1000

// GetMany returns the payloads of the given ids, nil where an id is missing.
func (f *items) GetMany(ctx context.Context, ids ...string) ([][]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := make([][]byte, 0, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), maxBatch)
		args := make([]any, 0, n+1)
		args = append(args, "get")
		for _, id := range ids[:n] {
			args = append(args, id)
		}
		vals, err := f.s.run(ctx, scripts.read, f.readKeys(), args...).Slice()
		if err != nil {
			return nil, scriptError(err, f.name, TypeItems, "get")
		}
		for _, v := range vals {
			out = append(out, bytesOf(v))
		}
		ids = ids[n:]
	}
	return out, nil
}

// All returns every item, by id.
func (f *items) All(ctx context.Context) (map[string][]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	vals, err := f.s.run(ctx, scripts.read, f.readKeys(), "all").Slice()
	if err != nil {
		return nil, scriptError(err, f.name, TypeItems, "all")
	}
	out := make(map[string][]byte, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		out[stringOf(vals[i])] = bytesOf(vals[i+1])
	}
	return out, nil
}

// Count returns the number of items.
func (f *items) Count(ctx context.Context) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	return f.s.Count(ctx, f.name)
}

// Page returns one page of the feed in display order.
func (f *items) Page(ctx context.Context, req PageRequest) (Page, error) {
	if f.err != nil {
		return Page{}, f.err
	}
	return f.s.Page(ctx, f.name, req)
}

// Feed is a handle on a plain feed (type "feed").
type Feed struct{ items }

// Feed returns a handle on a plain feed; a bad name is reported by every operation.
func (s *Store) Feed(name string) *Feed { return &Feed{newItems(s, name)} }

// PublishResult tells what a plain-feed publish did.
type PublishResult struct {
	// ID is the item's id (generated when none was given).
	ID string
	// New is true for a new id (announced on feed.publish), false for an
	// edit of an existing id (announced on feed.edit).
	New bool
}

// Publish stores item under id (a random id when empty): a new id is a
// publish, an existing one an edit. When the feed's max_length is set, the
// oldest other items beyond it are retracted in the same step.
func (f *Feed) Publish(ctx context.Context, item []byte, id string) (PublishResult, error) {
	if f.err != nil {
		return PublishResult{}, f.err
	}
	if id == "" {
		id = NewID()
	} else if err := ValidateID(id); err != nil {
		return PublishResult{}, err
	}
	return f.publish(ctx, item, id, "")
}

// Create publishes item under id only when the id is new; an existing id
// is an error wrapping ErrItemExists and changes nothing.
func (f *Feed) Create(ctx context.Context, item []byte, id string) (PublishResult, error) {
	if f.err != nil {
		return PublishResult{}, f.err
	}
	if err := ValidateID(id); err != nil {
		return PublishResult{}, err
	}
	return f.publish(ctx, item, id, "create")
}

// Edit replaces the payload of an existing item, like a publish of its id,
// but fails with ErrItemNotFound instead of creating it.
func (f *Feed) Edit(ctx context.Context, id string, item []byte) error {
	if f.err != nil {
		return f.err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	_, err := f.publish(ctx, item, id, "edit")
	return err
}

func (f *Feed) publish(ctx context.Context, item []byte, id, mode string) (PublishResult, error) {
	added, err := f.s.run(ctx, scripts.publish, f.k.feed(), f.name, f.s.jmax, f.s.jitem, id, item, mode).Int64()
	if err != nil {
		return PublishResult{}, scriptError(err, f.name, TypeFeed, "publish")
	}
	return PublishResult{ID: id, New: added == 1}, nil
}

// Retract removes an item and announces it on feed.retract; a missing id
// is an error wrapping ErrItemNotFound.
func (f *Feed) Retract(ctx context.Context, id string) error {
	if f.err != nil {
		return f.err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	err := f.s.run(ctx, scripts.retract, f.k.feed(), f.name, f.s.jmax, f.s.jitem, id).Err()
	return scriptError(err, f.name, TypeFeed, "retract")
}

// bytesOf converts a script reply element to bytes (nil for a nil reply).
func bytesOf(v any) []byte {
	switch x := v.(type) {
	case string:
		return []byte(x)
	case []byte:
		return x
	}
	return nil
}

// stringOf converts a script reply element to a string ("" for nil).
func stringOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return fmt.Sprint(x)
	}
	return ""
}
