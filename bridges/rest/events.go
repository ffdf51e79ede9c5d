package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-contrib/sse"
	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core/thoonk"
)

// batchSize bounds the events written between two flushes.
const batchSize = 256

// reconnectMillis is the reconnection delay suggested to SSE clients.
const reconnectMillis = 2000

// ResetJSON is the data of a reset event: the client must reload the
// feeds it follows, then go on from this event's id.
type ResetJSON struct {
	// Reason is "history-unavailable" (the id is not from these feeds'
	// journals: malformed, or a journal lost with Redis' data) or
	// "too-far-behind" (the events after the id are no longer kept:
	// older than journal.max_events or journal.max_age).
	Reason string `json:"reason"`
}

// poll is a long poll's wait for a feed's next change.
type poll struct {
	w     *watch // nil: no (more) waiting
	timer *time.Timer
	stop  <-chan struct{}
}

// startPoll prepares a request that may wait up to wait for feed's next
// change: with a wait it takes a stream slot (ok false: it answered 503),
// follows the feed's events and extends the write deadline. done releases
// what it took.
func (b *Bridge) startPoll(c *gin.Context, feed string, wait time.Duration) (p *poll, done func(), ok bool) {
	p = &poll{timer: time.NewTimer(wait), stop: b.stopping.Done()}
	release := func() {}
	if wait > 0 {
		rel, ok := b.acquireStream(c)
		if !ok {
			p.timer.Stop()
			return nil, nil, false
		}
		w, unwatch := b.ring.watch(feed, nil)
		p.w, release = w, func() { unwatch(); rel() }
		_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(wait + b.cfg.Events.WriteTimeout))
	}
	return p, func() { p.timer.Stop(); release() }, true
}

// waiting reports whether the request still waits for a change.
func (p *poll) waiting() bool { return p.w != nil }

// wait blocks until the feed changes, or the wait runs out or the bridge
// stops (then it waits no more: one last read answers); it returns false
// when the client is gone.
func (p *poll) wait(ctx context.Context) bool {
	select {
	case <-p.w.ch:
	case <-p.timer.C:
		p.w = nil
	case <-p.stop:
		p.w = nil
	case <-ctx.Done():
		return false
	}
	return true
}

// acquireStream takes one of the max_streams slots, or answers 503.
func (b *Bridge) acquireStream(c *gin.Context) (release func(), ok bool) {
	select {
	case b.streams <- struct{}{}:
		return func() { <-b.streams }, true
	default:
		c.Header("Retry-After", "5")
		fail(c, "unavailable", "too many open event streams; retry later")
		return nil, false
	}
}

// feedEvents streams one feed's events. A feed that does not exist is
// the same 404 as a hidden or unreadable one (the pattern route follows
// feeds that do not exist yet).
func (b *Bridge) feedEvents(c *gin.Context) {
	feed, ok := b.feedParam(c)
	if !ok {
		return
	}
	if _, err := b.hub.Store.Type(c.Request.Context(), feed); err != nil {
		b.failErr(c, err)
		return
	}
	b.stream(c, feed, nil, func(f string) bool { return f == feed })
}

// events streams the events of every feed matching ?feeds= (glob
// patterns, repeatable; default every feed) that this client may read.
func (b *Bridge) events(c *gin.Context) {
	pats, match, err := b.patternMatch(actorOf(c), c.QueryArray("feeds"))
	if err != nil {
		fail(c, "bad-request", "feeds: "+err.Error())
		return
	}
	b.stream(c, "", pats, match)
}

// stream serves Server-Sent Events: first what the client missed after
// its Last-Event-ID (header, or ?last_event_id=), read from the journals,
// or a reset when that cannot be known exactly, then live events, with
// heartbeat comments while idle.
//
// On HTTP/1.x the connection is hijacked and the stream runs in a goroutine
// of its own, so that net/http's per-request buffers, its background reader
// and the handler's deep stack are released while the stream idles: an
// idle stream costs a few kilobytes. The body is delimited by closing the
// connection (Connection: close), which every SSE client accepts. Where
// hijacking is impossible (HTTP/2) the stream runs in the handler.
func (b *Bridge) stream(c *gin.Context, feed string, pats []thoonk.Pattern, match func(string) bool) {
	h := c.Writer.Header()
	if c.Request.Method == http.MethodHead { // the stream's headers; no stream opens
		streamHeaders(h)
		c.Status(http.StatusOK)
		return
	}
	release, ok := b.acquireStream(c)
	if !ok {
		return
	}
	last := c.GetHeader("Last-Event-ID")
	if last == "" {
		last = c.Query("last_event_id")
	}
	f, err := b.follow(c.Request.Context(), feed, pats, last, match)
	if err != nil {
		release()
		b.failErr(c, err)
		return
	}
	streamHeaders(h)
	hello := "retry: " + strconv.Itoa(reconnectMillis) + "\n"
	if last == "" {
		hello += "id: " + f.id() + "\n" // sets the resume point without an event
	}
	hello += "\n"
	s := &stream{b: b, f: f}
	if conn, err := hijack(c.Writer); err == nil {
		s.conn = conn
		h.Set("Connection", "close")
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		var head bytes.Buffer
		head.WriteString("HTTP/1.1 200 OK\r\n")
		_ = h.Write(&head)
		head.WriteString("\r\n" + hello)
		ok := b.goStream(func() {
			defer conn.Close()
			stop := context.AfterFunc(b.stopping, func() { _ = conn.Close() }) // unblocks a stuck write
			defer stop()
			if s.send(head.Bytes()) {
				s.run(nil)
			}
		}, release, f.close)
		if !ok {
			_ = conn.Close()
		}
		return
	}
	defer release()
	defer f.close()
	c.Status(http.StatusOK)
	s.out, s.rc = c.Writer, http.NewResponseController(c.Writer)
	if s.send([]byte(hello)) {
		s.run(c.Request.Context().Done())
	}
}

// streamHeaders sets the headers of an event stream.
func streamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
}

// goStream runs a hijacked stream in its own goroutine, which Run waits
// for; once the bridge is stopping it runs nothing and returns false. The
// cleanup functions run after fn, or at once when nothing runs.
func (b *Bridge) goStream(fn func(), cleanup ...func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping.Err() != nil {
		for _, f := range cleanup {
			f()
		}
		return false
	}
	b.hijacked.Go(func() {
		for _, f := range cleanup {
			defer f()
		}
		fn()
	})
	return true
}

// hijack takes over the connection beneath gin's writer (whose own
// Hijack panics on HTTP/2).
func hijack(w gin.ResponseWriter) (net.Conn, error) {
	u, ok := w.(interface{ Unwrap() http.ResponseWriter })
	if !ok {
		return nil, http.ErrNotSupported
	}
	if _, ok := u.Unwrap().(http.Hijacker); !ok {
		return nil, http.ErrNotSupported
	}
	conn, _, err := w.Hijack()
	return conn, err
}

// stream is one event stream's state.
type stream struct {
	b   *Bridge
	f   *follower
	buf bytes.Buffer

	conn net.Conn // hijacked, or
	out  io.Writer
	rc   *http.ResponseController
}

// send writes and flushes p within events.write_timeout.
func (s *stream) send(p []byte) bool {
	deadline := time.Now().Add(s.b.cfg.Events.WriteTimeout)
	if s.conn != nil {
		_ = s.conn.SetWriteDeadline(deadline)
		_, err := s.conn.Write(p)
		return err == nil
	}
	_ = s.rc.SetWriteDeadline(deadline)
	_, err := s.out.Write(p)
	return err == nil && s.rc.Flush() == nil
}

// probeWait is how long the liveness probe's read may wait. It must be
// in the future when the read starts: with a deadline already past, the
// read fails at once without looking at the socket, and a closed
// connection would never be noticed.
const probeWait = time.Millisecond

// alive reports whether the client is still there. A hijacked connection
// is probed with a read that waits at most probeWait: a client that closed
// its end reads as EOF.
func (s *stream) alive() bool {
	if s.conn == nil {
		return true // the request context tells
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(probeWait))
	var one [1]byte
	_, err := s.conn.Read(one[:])
	var ne net.Error
	return err == nil || errors.As(err, &ne) && ne.Timeout()
}

// run writes events until the client leaves (gone closes, a write fails or
// a heartbeat probe finds it gone), or the bridge stops.
func (s *stream) run(gone <-chan struct{}) {
	heartbeat := time.NewTicker(s.b.cfg.Events.Heartbeat)
	defer heartbeat.Stop()
	for {
		frames := s.f.next(batchSize)
		s.buf.Reset()
		for _, fr := range frames {
			_ = sse.Encode(&s.buf, sse.Event{Event: fr.event, Id: fr.id, Data: fr.data})
		}
		if len(frames) > 0 {
			if !s.send(s.buf.Bytes()) {
				return
			}
			s.b.hub.Metrics.EventOut(s.b.Name(), len(frames))
			continue // drain what is kept before waiting
		}
		if s.buf.Cap() > 64<<10 {
			s.buf = bytes.Buffer{} // do not keep a burst's buffer while idle
		}
		select {
		case <-s.f.wake():
		case <-heartbeat.C:
			if !s.alive() || !s.send([]byte(": heartbeat\n\n")) {
				return
			}
		case <-gone:
			return
		case <-s.b.stopping.Done():
			return
		}
	}
}

// frame is one message of an event stream, whatever carries it (an SSE
// event, a WebSocket message): an item or feed event, or a reset.
type frame struct {
	// event is publish, edit, retract, position, delete, or reset.
	event string
	// id is the resume position after this frame (SSE's Last-Event-ID).
	id string
	// data is the event's EventJSON, or a reset's ResetJSON.
	data []byte
}

// follower is one consumer's place in the bridge's event source: every SSE
// stream and every WebSocket subscription reads events, ids and replays
// through it, so that both always give the same ids and resume the same
// way. Live events come from the ring; whatever the ring cannot tell (a
// resume, a reconnect to Redis, events evicted while the follower was
// behind) is read from the feeds' journals, and only what the journals
// cannot tell either is a reset.
type follower struct {
	b       *Bridge
	w       *watch
	unwatch func()
	feed    string // the one feed, or "" for several
	match   func(feed string) bool

	// point is what the consumer has; local its place in the ring;
	// catchUp asks for the journals to be read from point; queued holds
	// frames read from the journals, not taken yet.
	point   point
	local   position
	catchUp bool
	queued  []frame
}

// follow starts following the events of feed (or of the feeds matching
// pats) that match wants, after lastID, an id the consumer got before
// ("": from now). A malformed id, or one not from the journals, resets.
// The watch is registered before the position is read, so that nothing
// slips between. Call close when done.
func (b *Bridge) follow(ctx context.Context, feed string, pats []thoonk.Pattern, lastID string, match func(string) bool) (*follower, error) {
	w, unwatch := b.ring.watch(feed, pats)
	f := &follower{b: b, w: w, unwatch: unwatch, feed: feed, match: match, local: b.ring.now()}
	if lastID != "" {
		if p, ok := parsePoint(lastID, feed == ""); ok {
			f.point, f.catchUp = p, true
			return f, nil
		}
	}
	p, err := b.startPoint(ctx, feed)
	if err != nil {
		unwatch()
		return nil, err
	}
	f.point = p
	if lastID != "" { // not an id of these journals
		f.queued = []frame{f.reset("history-unavailable")}
	}
	return f, nil
}

// startPoint returns the point of a follower that starts now: after the
// feed's last journal revision (one feed), or at Redis' clock (several).
func (b *Bridge) startPoint(ctx context.Context, feed string) (point, error) {
	if feed != "" {
		rev, err := b.hub.Store.Journal(feed).Last(ctx)
		if err != nil {
			return point{}, err
		}
		return newPoint(false, rev, 0), nil
	}
	now, err := b.hub.Store.Client().Time(ctx).Result()
	if err != nil {
		return point{}, fmt.Errorf("redis time: %w", err)
	}
	return newPoint(true, "", uint64(now.UnixMilli())), nil
}

// id returns the resume id of the follower's current position.
func (f *follower) id() string { return f.point.String() }

// wake signals when an event the follower may want has arrived.
func (f *follower) wake() <-chan struct{} { return f.w.ch }

// close stops watching.
func (f *follower) close() { f.unwatch() }

// reset is a reset frame, at the follower's point.
func (f *follower) reset(reason string) frame {
	data, _ := json.Marshal(ResetJSON{Reason: reason})
	return frame{event: "reset", id: f.point.String(), data: data}
}

// frameOf renders an entry as the next frame, moving the point past it.
func (f *follower) frameOf(e entry) frame {
	f.point.advance(e.feed, e.rev)
	return frame{event: e.typ, id: f.point.String(), data: e.data}
}

// next returns up to max frames available now, in order, and moves past
// them: events, or a reset (its id is where to go on from). None means
// wait for wake.
func (f *follower) next(max int) []frame {
	for {
		if len(f.queued) > 0 {
			n := min(max, len(f.queued))
			out := f.queued[:n:n]
			f.queued = f.queued[n:]
			return out
		}
		if f.catchUp {
			f.catchUp = false
			f.local = f.b.ring.now() // what comes meanwhile is read from the ring after
			if !f.replay() {
				return nil // Redis is away: catchUp is set again, wait for wake
			}
			continue
		}
		batch, next, lost := f.b.ring.read(f.local, f.match, max)
		if lost {
			f.catchUp = true
			continue
		}
		moved := next != f.local
		f.local = next
		var out []frame
		for _, e := range batch {
			if !f.point.delivered(e.feed, e.rev) {
				out = append(out, f.frameOf(e))
			}
		}
		if len(out) > 0 || !moved {
			return out
		}
		// only other feeds' or delivered events were passed over: read on
	}
}

// replay queues what the journals hold after the point, or a reset when
// they cannot tell it; false (catchUp set again) when Redis cannot be read.
func (f *follower) replay() bool {
	ctx, cancel := context.WithTimeout(f.b.stopping, 30*time.Second)
	defer cancel()
	feeds := []string{f.feed}
	if f.feed == "" {
		all, err := f.b.hub.Store.Feeds(ctx)
		if err != nil {
			f.catchUp = true
			return false
		}
		feeds = slices.DeleteFunc(all, func(name string) bool { return !f.match(name) })
	}
	entries, err := f.b.replay(ctx, f.point, feeds)
	var gap *thoonk.GapError
	switch {
	case errors.As(err, &gap) || errors.Is(err, errTooMany):
		reason := "too-far-behind"
		if gap != nil && gap.Reason == "unknown" {
			reason = "history-unavailable"
		}
		p, perr := f.b.startPoint(ctx, f.feed)
		if perr != nil {
			f.catchUp = true
			return false
		}
		f.point = p
		f.queued = append(f.queued, f.reset(reason))
		return true
	case err != nil:
		f.catchUp = true
		return false
	}
	for _, e := range entries {
		f.queued = append(f.queued, f.frameOf(e))
	}
	return true
}
