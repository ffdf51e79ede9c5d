package rest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Item encodings: how the opaque payload is carried in JSON.
const (
	encJSON   = "json"   // the payload is JSON and embedded as is
	encText   = "text"   // UTF-8 text, as a JSON string
	encBase64 = "base64" // anything else, base64 (standard alphabet)
)

// Payload is an item payload in JSON: embedded JSON, a string or base64.
type Payload struct {
	Item     json.RawMessage `json:"item"`
	Encoding string          `json:"encoding"`
}

// payloadOf renders opaque bytes for JSON.
func payloadOf(data []byte) Payload {
	switch {
	case !utf8.Valid(data):
	case json.Valid(data):
		return Payload{Item: data, Encoding: encJSON}
	default:
		b, _ := json.Marshal(string(data))
		return Payload{Item: b, Encoding: encText}
	}
	b, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
	return Payload{Item: b, Encoding: encBase64}
}

// ItemJSON is an item as the API shows it.
type ItemJSON struct {
	ID string `json:"id"`
	Payload
	// Published is the last publish or edit time (plain feeds only).
	Published *time.Time `json:"published,omitempty"`
	// Position is the index in display order (listings only).
	Position *int64 `json:"position,omitempty"`
	// Cursor pages or polls onward from this item (listings only).
	Cursor string `json:"cursor,omitempty"`
	// Rev is the journal revision of the item's last change: its version,
	// for If-Match.
	Rev string `json:"rev,omitempty"`
}

func listedItem(it thoonk.Item) ItemJSON {
	j := ItemJSON{ID: it.ID, Payload: payloadOf(it.Data), Cursor: it.Cursor().Encode(), Rev: it.Rev}
	idx := it.Index
	j.Position = &idx
	if !it.Published.IsZero() {
		t := it.Published.UTC()
		j.Published = &t
	}
	return j
}

// readItem reads one item of a plain or sorted feed with its publish time
// (plain feeds), in one round trip. Its position and cursor are left out:
// they change whenever other items come and go, and the representation
// (and so its ETag) must change only when the item does.
func readItem(ctx context.Context, s *thoonk.Store, feed, id string) (ItemJSON, error) {
	it, err := s.Item(ctx, feed, id)
	if err != nil {
		return ItemJSON{}, err
	}
	return itemJSON(it), nil
}

// readItemFast is readItem in one round trip of plain commands once the
// feed's type is known (cached): HGET, and ZSCORE on plain feeds.
func (b *Bridge) readItemFast(ctx context.Context, feed, id string) (ItemJSON, error) {
	typ, ok := b.types.get(feed)
	if ok {
		it, err := b.hub.Store.ItemOf(ctx, feed, typ, id)
		if !errors.Is(err, thoonk.ErrWrongType) {
			if err != nil {
				return ItemJSON{}, err
			}
			return itemJSON(it), nil
		}
		b.types.forget(feed) // created again with another type: ask again
	}
	it, err := b.hub.Store.Item(ctx, feed, id)
	if err != nil {
		return ItemJSON{}, err
	}
	typ = thoonk.TypeSorted // plain feeds give every item a publish time, sorted feeds none
	if !it.Published.IsZero() {
		typ = thoonk.TypeFeed
	}
	b.types.set(feed, typ)
	return itemJSON(it), nil
}

// itemJSON shows a single item.
func itemJSON(it thoonk.Item) ItemJSON {
	j := listedItem(it)
	j.Position, j.Cursor = nil, ""
	return j
}

// itemETag is an item's strong validator: its revision, which every change
// of the item changes (a hash of the representation for an item that has
// none yet, written by another Thoonk library and not journaled so far).
func itemETag(it ItemJSON, body []byte) string {
	if it.Rev != "" {
		return `"` + it.Rev + `"`
	}
	return etagOf(body)
}

// revTag returns the revision an If-Match list names, when it names
// exactly one strong entity tag that is a revision.
func revTag(l core.ETagList) (string, bool) {
	if l.Any || len(l.Tags) != 1 || l.Tags[0].Weak {
		return "", false
	}
	rev := strings.Trim(l.Tags[0].Tag, `"`)
	return rev, thoonk.ValidRev(rev)
}

// etagOf is the strong validator of a representation: a hash of its bytes.
func etagOf(body []byte) string {
	h := sha256.Sum256(body)
	return `"` + hex.EncodeToString(h[:16]) + `"`
}

// EventJSON is the data of an item or feed event on a stream.
type EventJSON struct {
	Feed string `json:"feed"`
	ID   string `json:"id,omitempty"`
	*Payload
	Position string `json:"position,omitempty"`
	// Rev is the change's journal revision (the item's revision after it).
	Rev string `json:"rev"`
	// Time is when the change was made (Redis' clock).
	Time time.Time `json:"time"`
}

func renderEvent(ev thoonk.Event) []byte {
	j := EventJSON{Feed: ev.Feed, ID: ev.ID, Position: ev.Position, Rev: ev.Rev, Time: thoonk.RevTime(ev.Rev).UTC()}
	if ev.Type == thoonk.EventPublish || ev.Type == thoonk.EventEdit {
		p := payloadOf(ev.Item)
		j.Payload = &p
	}
	b, _ := json.Marshal(j) // cannot fail: valid raw JSON only
	return b
}
