package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
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
	// Reason is "history-unavailable" (the id is from another epoch: the
	// bridge restarted, or Redis events were lost) or "too-far-behind"
	// (the events after the id are no longer kept).
	Reason string `json:"reason"`
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

// stream serves Server-Sent Events from the replay ring: first what the
// client missed after its Last-Event-ID (header, or ?last_event_id=), or a
// reset when that cannot be known exactly, then live events, with
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
	f := b.follow(feed, pats, last, match)
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
// way.
type follower struct {
	b       *Bridge
	w       *watch
	unwatch func()
	pos     position
	match   func(feed string) bool
}

// follow starts following the events of feed (or of the feeds matching
// pats) that match wants, after lastID, an id the client got before ("":
// from now). A malformed or unknown id resets like one from another epoch.
// The watch is registered before the position is read, so that nothing
// slips between. Call close when done.
func (b *Bridge) follow(feed string, pats []thoonk.Pattern, lastID string, match func(string) bool) *follower {
	w, unwatch := b.ring.watch(feed, pats)
	pos := b.ring.now()
	if lastID != "" {
		pos, _ = parsePosition(lastID)
	}
	return &follower{b: b, w: w, unwatch: unwatch, pos: pos, match: match}
}

// id returns the resume id of the follower's current position.
func (f *follower) id() string { return f.pos.String() }

// wake signals when an event the follower may want has arrived.
func (f *follower) wake() <-chan struct{} { return f.w.ch }

// close stops watching.
func (f *follower) close() { f.unwatch() }

// next returns up to max frames available now, in order, and moves past
// them: events, or one reset when the events after the position cannot be
// known exactly (its id is where to go on from). None means wait for wake.
func (f *follower) next(max int) []frame {
	for {
		batch, next, lost := f.b.ring.read(f.pos, f.match, max)
		moved := next != f.pos
		if lost {
			reason := "too-far-behind"
			if f.pos.epoch != next.epoch || f.pos.seq > next.seq {
				reason = "history-unavailable"
			}
			f.pos = next
			data, _ := json.Marshal(ResetJSON{Reason: reason})
			return []frame{{event: "reset", id: next.String(), data: data}}
		}
		f.pos = next
		if len(batch) > 0 || !moved {
			out := make([]frame, len(batch))
			for i, e := range batch {
				out[i] = frame{event: e.typ, id: position{next.epoch, e.seq}.String(), data: e.data}
			}
			return out
		}
		// only other feeds' events were passed over: read on
	}
}
