package rest

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Event ids are journal revisions, so a stream resumes exactly on any
// bridge process and after restarts (see thoonk.Journal).
//
//   - A stream of one feed uses the revision of its last event: "1733300000123-0".
//   - A stream of several feeds uses the time of its last event and, for
//     each feed with events delivered at that millisecond, the revision's
//     sequence: "1733300000123~1a2b3c4d.0~5e6f7a8b.2" (a feed named by the
//     first 8 hex digits of its name's SHA-1). On one Redis server (or
//     Sentinel) revisions of every feed come from one clock, so every
//     event after that point is known exactly. On Redis Cluster each
//     master's clock numbers its own feeds: a resume on a stream of
//     several feeds may miss events of a master whose clock runs behind
//     by more than the gap between two events (see docs/rest.md).

// point is a stream's place in the journals.
type point struct {
	ms   uint64
	seen map[string]uint64 // feed (or its hash) -> newest sequence delivered at ms
	// single is set on a stream of one feed: its last revision.
	single string
}

// feedHash names a feed in a multi-feed stream id.
func feedHash(feed string) string {
	h := sha1.Sum([]byte(feed))
	return hex.EncodeToString(h[:4])
}

// splitRev returns a revision's time and sequence parts.
func splitRev(rev string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(rev, "-")
	x, e1 := strconv.ParseUint(a, 10, 64)
	y, e2 := strconv.ParseUint(b, 10, 64)
	return x, y, found && e1 == nil && e2 == nil
}

// newPoint returns the point of a stream at the revision after (one feed)
// or at the millisecond ms (several feeds).
func newPoint(multi bool, after string, ms uint64) point {
	if multi {
		return point{ms: ms, seen: map[string]uint64{}}
	}
	return point{single: after}
}

// delivered reports whether the event of feed at rev is at or before the
// point (the stream has it).
func (p point) delivered(feed, rev string) bool {
	if p.seen == nil {
		return p.single != "" && !thoonk.RevBefore(p.single, rev)
	}
	ms, seq, ok := splitRev(rev)
	if !ok || ms < p.ms {
		return ok
	}
	if ms > p.ms {
		return false
	}
	old, has := p.seen[feedHash(feed)]
	return has && seq <= old
}

// advance records an event delivered.
func (p *point) advance(feed, rev string) {
	if p.seen == nil {
		p.single = rev
		return
	}
	ms, seq, ok := splitRev(rev)
	if !ok {
		return
	}
	switch {
	case ms > p.ms:
		p.ms = ms
		clear(p.seen)
		p.seen[feedHash(feed)] = seq
	case ms == p.ms:
		if old, has := p.seen[feedHash(feed)]; !has || seq > old {
			p.seen[feedHash(feed)] = seq
		}
	}
}

// String renders the point as an event id.
func (p point) String() string {
	if p.seen == nil {
		return p.single
	}
	var b strings.Builder
	b.WriteString(strconv.FormatUint(p.ms, 10))
	for _, h := range slices.Sorted(mapsKeys(p.seen)) {
		fmt.Fprintf(&b, "~%s.%d", h, p.seen[h])
	}
	return b.String()
}

func mapsKeys(m map[string]uint64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// parsePoint reads an event id: a revision for a stream of one feed (multi
// false), the multi-feed form otherwise.
func parsePoint(id string, multi bool) (point, bool) {
	if !multi {
		if !thoonk.ValidRev(id) {
			return point{}, false
		}
		return point{single: id}, true
	}
	parts := strings.Split(id, "~")
	ms, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil || len(parts) > 1025 {
		return point{}, false
	}
	p := point{ms: ms, seen: map[string]uint64{}}
	for _, s := range parts[1:] {
		h, n, ok := strings.Cut(s, ".")
		seq, err := strconv.ParseUint(n, 10, 64)
		if !ok || len(h) != 8 || err != nil {
			return point{}, false
		}
		p.seen[h] = seq
	}
	return p, true
}

// after returns the revision after which a feed's events are new to the
// stream at this point, and whether it is one of the feed's own (else a
// point in time: the stream saw no event of the feed in its last
// millisecond, and the feed may have had none since, or its first after).
func (p point) after(feed string) (string, bool) {
	if p.seen == nil {
		return p.single, true
	}
	if seq, ok := p.seen[feedHash(feed)]; ok {
		return strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(seq, 10), true
	}
	if p.ms == 0 {
		return thoonk.RevStart, true
	}
	// every event of the millisecond is new: start just before it
	return strconv.FormatUint(p.ms-1, 10) + "-" + strconv.FormatUint(^uint64(0), 10), false
}

// revLess orders revisions (feed names break ties between feeds).
func revLess(a, b entry) int {
	am, as, _ := splitRev(a.rev)
	bm, bs, _ := splitRev(b.rev)
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(as, bs), cmp.Compare(a.feed, b.feed))
}

// errTooMany stops a replay longer than the adapter replays at once.
var errTooMany = errors.New("too many events to replay")

// maxReplay bounds the events one resume replays from the journals.
const maxReplay = 100000

// replay reads from the feeds' journals every event after the point, in
// revision order, rendered; a *thoonk.GapError (the stream must reset)
// when a journal cannot tell them all, errTooMany past maxReplay.
func (b *Bridge) replay(ctx context.Context, p point, feeds []string) ([]entry, error) {
	var (
		mu  sync.Mutex
		out []entry
		bad error
		wg  sync.WaitGroup
		sem = make(chan struct{}, 32)
	)
	for _, f := range feeds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			after, own := p.after(f)
			es, err := b.readJournal(ctx, f, after, !own, maxReplay)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && bad == nil:
				bad = err
			case err == nil:
				out = append(out, es...)
				if len(out) > maxReplay {
					bad = errTooMany
				}
			}
		})
	}
	wg.Wait()
	if bad != nil {
		return nil, bad
	}
	slices.SortFunc(out, revLess)
	return out, nil
}

// readJournal reads up to max of a feed's journal entries after a
// revision, rendered as the stream sends them.
func (b *Bridge) readJournal(ctx context.Context, feed, after string, timed bool, max int) ([]entry, error) {
	j := b.hub.Store.Journal(feed)
	var out []entry
	for len(out) < max {
		read := j.Read
		if timed && len(out) == 0 {
			read = j.ReadAfterTime // (then from an entry of the journal)
		}
		es, _, err := read(ctx, after, min(1000, max-len(out)))
		if err != nil {
			return nil, err
		}
		if len(es) == 0 {
			return out, nil
		}
		evs := make([]thoonk.Event, len(es))
		for i, e := range es {
			evs[i] = e.Event(feed)
		}
		if err := b.fillLarge(ctx, evs); err != nil {
			return nil, err
		}
		for _, ev := range evs {
			out = append(out, entry{typ: ev.Type.String(), feed: feed, rev: ev.Rev, data: renderEvent(ev)})
		}
		after = es[len(es)-1].Rev
	}
	return out, errTooMany
}

// fillLarge reads the items of events whose item the journal did not keep
// (too large): the feed's current version.
func (b *Bridge) fillLarge(ctx context.Context, evs []thoonk.Event) error {
	for i := range evs {
		ev := &evs[i]
		if !ev.Large || (ev.Type != thoonk.EventPublish && ev.Type != thoonk.EventEdit) {
			continue
		}
		it, err := b.hub.Store.Item(ctx, ev.Feed, ev.ID)
		switch {
		case errors.Is(err, thoonk.ErrNotFound):
			ev.Item = []byte{} // gone since: shown empty
		case err != nil:
			return err
		default:
			ev.Item = it.Data
		}
	}
	return nil
}

// ChangeJSON is one change of a feed, as GET .../changes lists it.
type ChangeJSON struct {
	// Type is publish, edit, retract, position or delete.
	Type string `json:"type"`
	EventJSON
}

// ChangesJSON is a page of a feed's changes.
type ChangesJSON struct {
	Feed    string       `json:"feed"`
	Changes []ChangeJSON `json:"changes"`
	// Next is the revision to ask for the following changes from
	// (?since=): the last change's, or since itself when there is none.
	Next string `json:"next"`
	// More is true when more changes follow at once.
	More bool `json:"more"`
}

// changes serves GET /v1/feeds/{feed}/changes?since=REV&limit=N&wait=S:
// the feed's changes after a revision, from its journal, oldest first;
// with wait, it answers as soon as there is one, or with an empty page
// when the wait runs out. A revision the journal cannot answer from is a
// 410 naming the revision to start again from (after reloading).
func (b *Bridge) changes(c *gin.Context) {
	feed, ok := b.feedParam(c)
	if !ok {
		return
	}
	since := c.DefaultQuery("since", thoonk.RevStart)
	if !thoonk.ValidRev(since) {
		fail(c, "bad-request", "since: want a revision such as 1733300000123-0 (an item's or a change's rev)")
		return
	}
	limit, ok := limitParam(c) // 1 to thoonk.MaxPageSize (1000)
	if !ok {
		return
	}
	wait, ok := waitParam(c, b.cfg.MaxWait)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if _, err := b.hub.Store.Type(ctx, feed); err != nil {
		b.failErr(c, err)
		return
	}
	p, done, ok := b.startPoll(c, feed, wait)
	if !ok {
		return
	}
	defer done()
	for {
		entries, err := b.readJournal(ctx, feed, since, false, limit+1)
		var gap *thoonk.GapError
		switch {
		case errors.As(err, &gap):
			last, lerr := b.hub.Store.Journal(feed).Last(ctx)
			if lerr != nil {
				b.failErr(c, lerr)
				return
			}
			fail(c, "history-gone", fmt.Sprintf("the changes after %s are %s; reload the feed, then follow its changes from since=%s",
				since, map[string]string{"trimmed": "no longer kept", "unknown": "not in this feed's journal"}[gap.Reason], last))
			return
		case err != nil && !errors.Is(err, errTooMany):
			b.failErr(c, err)
			return
		}
		if len(entries) > 0 || !p.waiting() {
			page := ChangesJSON{Feed: feed, Changes: []ChangeJSON{}, Next: since}
			page.More = len(entries) > limit
			entries = entries[:min(len(entries), limit)]
			for _, e := range entries {
				var ev EventJSON
				_ = json.Unmarshal(e.data, &ev) // rendered here: valid
				page.Changes = append(page.Changes, ChangeJSON{Type: e.typ, EventJSON: ev})
				page.Next = e.rev
			}
			c.Header("Cache-Control", "no-store")
			writeJSON(c, http.StatusOK, page)
			return
		}
		if !p.wait(ctx) {
			return
		}
	}
}
