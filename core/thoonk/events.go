package thoonk

import (
	"fmt"
	"strings"
	"time"
)

// EventType says what happened.
type EventType uint8

// Event types. Publish, edit, retract and position concern items; create,
// delete and config concern feeds; job finish carries a job's result;
// resync tells a consumer that it may have lost events and must reload.
const (
	EventPublish EventType = iota + 1
	EventEdit
	EventRetract
	EventPosition
	EventCreate
	EventDelete
	EventConfig
	EventJobFinish
	EventResync
)

var eventNames = [...]string{
	EventPublish:   "publish",
	EventEdit:      "edit",
	EventRetract:   "retract",
	EventPosition:  "position",
	EventCreate:    "create",
	EventDelete:    "delete",
	EventConfig:    "config",
	EventJobFinish: "job finish",
	EventResync:    "resync",
}

// String returns the event type's name ("publish", "job finish", ...).
func (t EventType) String() string {
	if int(t) < len(eventNames) && eventNames[t] != "" {
		return eventNames[t]
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// ResyncReason says why a consumer must reload.
type ResyncReason uint8

// Resync reasons.
const (
	// ResyncConnected: the listener (re)connected to Redis; events
	// published while it was not subscribed are lost.
	ResyncConnected ResyncReason = iota + 1
	// ResyncOverflow: the consumer's queue overflowed and was emptied.
	ResyncOverflow
)

// String returns "connected" or "overflow".
func (r ResyncReason) String() string {
	switch r {
	case ResyncConnected:
		return "connected"
	case ResyncOverflow:
		return "overflow"
	}
	return "none"
}

// Event is one change seen on Redis pubsub. Sorted feeds announce inserts
// and edits alike on feed.publish, so on a sorted feed an insert arrives as
// EventPublish followed by EventPosition and an edit as EventPublish alone.
//
// Events are shared between consumers: never modify Item.
type Event struct {
	Type EventType
	// Feed is the feed's name (empty for EventResync).
	Feed string
	// ID is the item or job id (empty for feed-level events).
	ID string
	// Item is the payload (publish, edit) or the job's result (job finish).
	Item []byte
	// Position is the schema's position string (position events).
	Position string
	// Instance is the changing process's instance id (create, delete, config).
	Instance string
	// Reason says why (resync events).
	Reason ResyncReason
	// Rev is the journal revision of a journal event (an entry announced
	// on feedbridge.journal:[feed]; see Journal); "" for the schema's own
	// events. Journal events come to subscriptions made with Journal set.
	Rev string
	// Large is set on a journal event whose item was too large to
	// journal: Item is nil, read the feed for it; Sum tells its version.
	Large bool
	// Sum is the content sum of a Large journal event's item (see
	// ContentSumHex).
	Sum string
	// Seq numbers the events of one Listener: strictly increasing, starting at 1.
	Seq uint64
	// At is when the listener received the event.
	At time.Time
}

// parseMessage turns a pubsub message into an event; ok is false for
// channels and payloads outside the schema.
func parseMessage(channel, payload string) (ev Event, ok bool) {
	switch channel {
	case channelNewFeed, channelDelFeed, channelConf:
		feed, inst, _ := strings.Cut(payload, "\x00")
		if feed == "" {
			return Event{}, false
		}
		ev = Event{Feed: feed, Instance: inst}
		switch channel {
		case channelNewFeed:
			ev.Type = EventCreate
		case channelDelFeed:
			ev.Type = EventDelete
		default:
			ev.Type = EventConfig
		}
		return ev, true
	}
	if feed, ok := strings.CutPrefix(channel, channelJournal); ok {
		return parseJournal(feed, payload)
	}
	var prefix string
	switch {
	case strings.HasPrefix(channel, prefixChanPublish):
		ev.Type, prefix = EventPublish, prefixChanPublish
	case strings.HasPrefix(channel, prefixChanEdit):
		ev.Type, prefix = EventEdit, prefixChanEdit
	case strings.HasPrefix(channel, prefixChanRetract):
		ev.Type, prefix = EventRetract, prefixChanRetract
	case strings.HasPrefix(channel, prefixChanPosition):
		ev.Type, prefix = EventPosition, prefixChanPosition
	case strings.HasPrefix(channel, prefixChanFinish):
		ev.Type, prefix = EventJobFinish, prefixChanFinish
	default:
		return Event{}, false
	}
	ev.Feed = channel[len(prefix):]
	if ev.Feed == "" {
		return Event{}, false
	}
	if ev.Type == EventRetract {
		if strings.IndexByte(payload, 0) >= 0 {
			return Event{}, false
		}
		ev.ID = payload
	} else {
		id, rest, found := strings.Cut(payload, "\x00")
		if !found {
			return Event{}, false
		}
		ev.ID = id
		if ev.Type == EventPosition {
			ev.Position = rest
		} else {
			ev.Item = []byte(rest)
		}
	}
	if ev.ID == "" {
		return Event{}, false
	}
	return ev, true
}

// parseJournal reads a journal announcement:
// "rev\0type\0id\0position\0kind\0item".
func parseJournal(feed, payload string) (Event, bool) {
	parts := strings.SplitN(payload, "\x00", 6)
	if feed == "" || len(parts) != 6 || !ValidRev(parts[0]) {
		return Event{}, false
	}
	ev := Event{Feed: feed, Rev: parts[0], Type: entryType(parts[1]), ID: parts[2], Position: parts[3]}
	switch parts[4] {
	case "i":
		ev.Item = []byte(parts[5])
	case "s":
		ev.Large, ev.Sum = true, parts[5]
	}
	if ev.Type == 0 || (ev.ID == "" && ev.Type != EventDelete) {
		return Event{}, false
	}
	return ev, true
}
