package rest

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// entry is one journal event kept for the streams, rendered once for
// every stream.
type entry struct {
	seq  uint64 // its place in this process's ring
	typ  string
	feed string
	rev  string // its journal revision
	data []byte
}

func (e *entry) size() int { return len(e.data) + len(e.feed) + 64 }

// ring is the process's buffer of recent journal events, received from the
// adapter's one core subscription and numbered within an epoch: every
// stream reads its live events from it. The epoch changes whenever events
// may have been lost here (the adapter (re)started, Redis pubsub
// reconnected, the subscription overflowed); memory is bounded by a count
// and a byte size. A stream whose place in the ring is gone (another
// epoch, or behind the oldest kept event, unless none of the events no
// longer kept after it is one it wants) reads what it missed from the
// feeds' journals in Redis instead (see stream.catchUp): the ring is a
// cache, the journal the record.
type ring struct {
	maxEvents, maxBytes int

	mu    sync.RWMutex
	epoch string
	last  uint64 // seq of the newest event (0: none yet in this epoch)
	buf   []entry
	head  int // index of the oldest entry
	n     int
	bytes int
	// evicted holds, per feed, the seq of its newest event no longer kept.
	// It is bounded by maxEvents feeds: when full it is emptied and floor
	// set, below which every position counts as behind what is kept.
	evicted map[string]uint64
	floor   uint64

	wmu    sync.Mutex
	byFeed map[string]map[*watch]struct{} // watchers of one feed
	wide   map[*watch]struct{}            // watchers of patterns
}

func newRing(maxEvents, maxBytes int) *ring {
	r := &ring{maxEvents: maxEvents, maxBytes: maxBytes, evicted: map[string]uint64{},
		byFeed: map[string]map[*watch]struct{}{}, wide: map[*watch]struct{}{}}
	r.newEpoch()
	return r
}

// newEpoch forgets every kept event and starts a new epoch; every watcher
// is woken so that its stream sends a reset.
func (r *ring) newEpoch() {
	var b [6]byte
	_, _ = rand.Read(b[:])
	r.mu.Lock()
	r.epoch = hex.EncodeToString(b[:])
	r.last, r.head, r.n, r.bytes = 0, 0, 0, 0
	r.buf = nil
	clear(r.evicted)
	r.floor = 0
	r.mu.Unlock()
	r.wakeAll()
}

// add appends an event and wakes the watchers of its feed.
func (r *ring) add(e entry) {
	r.mu.Lock()
	if r.buf == nil {
		r.buf = make([]entry, r.maxEvents)
	}
	for r.n > 0 && (r.n == len(r.buf) || r.bytes+e.size() > r.maxBytes) {
		r.bytes -= r.buf[r.head].size()
		r.forget(r.buf[r.head])
		r.buf[r.head] = entry{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	r.last++
	e.seq = r.last
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
	r.bytes += e.size()
	r.mu.Unlock()

	r.wmu.Lock()
	for w := range r.byFeed[e.feed] {
		w.wake()
	}
	for w := range r.wide {
		if w.wants(e.feed) {
			w.wake()
		}
	}
	r.wmu.Unlock()
}

// forget notes an event that is no longer kept; r.mu is held.
func (r *ring) forget(e entry) {
	if len(r.evicted) >= r.maxEvents {
		clear(r.evicted)
		r.floor = e.seq // every evicted event so far is at most e
		return
	}
	r.evicted[e.feed] = e.seq
}

// missedNothing reports whether no event after seq that match wants is
// among those no longer kept; r.mu is held.
func (r *ring) missedNothing(seq uint64, match func(feed string) bool) bool {
	if seq < r.floor {
		return false
	}
	for feed, s := range r.evicted {
		if s > seq && match(feed) {
			return false
		}
	}
	return true
}

// position is a place in the event sequence.
type position struct {
	epoch string
	seq   uint64
}

func (p position) String() string { return p.epoch + "-" + strconv.FormatUint(p.seq, 10) }

// parsePosition reads an event id; ok is false for anything malformed.
func parsePosition(id string) (position, bool) {
	ep, s, ok := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(s, 10, 64)
	if !ok || ep == "" || err != nil {
		return position{}, false
	}
	return position{epoch: ep, seq: seq}, true
}

// now returns the position of the newest event.
func (r *ring) now() position {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return position{r.epoch, r.last}
}

// read returns up to max kept events after p that match, the position to
// read from next, and whether the events after p can no longer be known
// exactly (then it returns no events and the head: the stream must reset).
func (r *ring) read(p position, match func(feed string) bool, max int) (out []entry, next position, lost bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	head := position{r.epoch, r.last}
	oldest := r.last - uint64(r.n) // seq just before the oldest kept event
	if p.epoch != r.epoch || p.seq > r.last || p.seq < oldest && !r.missedNothing(p.seq, match) {
		return nil, head, true
	}
	next = p
	i := 0 // the first kept event after p
	if p.seq > oldest {
		i = int(p.seq - oldest)
	}
	for ; i < r.n && len(out) < max; i++ {
		e := r.buf[(r.head+i)%len(r.buf)]
		next.seq = e.seq
		if match(e.feed) {
			out = append(out, e)
		}
	}
	return out, next, false
}

// watch wakes one stream or long poll when an event it may want arrives.
type watch struct {
	feed string           // one feed, or
	pats []thoonk.Pattern // any feed matching
	ch   chan struct{}
}

func (w *watch) wants(feed string) bool {
	if w.feed != "" {
		return w.feed == feed
	}
	for _, p := range w.pats {
		if p.Match(feed) {
			return true
		}
	}
	return false
}

func (w *watch) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// watch registers a watcher; call the returned function to remove it.
func (r *ring) watch(feed string, pats []thoonk.Pattern) (*watch, func()) {
	w := &watch{feed: feed, pats: pats, ch: make(chan struct{}, 1)}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	set := r.wide
	if feed != "" {
		if set = r.byFeed[feed]; set == nil {
			set = map[*watch]struct{}{}
			r.byFeed[feed] = set
		}
	}
	set[w] = struct{}{}
	return w, func() {
		r.wmu.Lock()
		defer r.wmu.Unlock()
		delete(set, w)
		if feed != "" && len(set) == 0 {
			delete(r.byFeed, feed)
		}
	}
}

func (r *ring) wakeAll() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	for _, set := range r.byFeed {
		for w := range set {
			w.wake()
		}
	}
	for w := range r.wide {
		w.wake()
	}
}
