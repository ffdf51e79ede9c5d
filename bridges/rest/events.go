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
	globs := c.QueryArray("feeds")
	if len(globs) == 0 {
		globs = []string{"*"}
	}
	pats := make([]thoonk.Pattern, 0, len(globs))
	for _, g := range globs {
		p, err := thoonk.CompilePattern(g)
		if err != nil {
			fail(c, "bad-request", "feeds: "+err.Error())
			return
		}
		pats = append(pats, p)
	}
	actor := actorOf(c)
	b.stream(c, "", pats, func(f string) bool {
		for _, p := range pats {
			if p.Match(f) {
				return b.exposed(actor, f)
			}
		}
		return false
	})
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
	w, unwatch := b.ring.watch(feed, pats) // before reading: nothing slips between
	local := b.ring.now()
	last := c.GetHeader("Last-Event-ID")
	if last == "" {
		last = c.Query("last_event_id")
	}
	st := &stream{b: b, w: w, local: local, match: match, feed: feed}
	ctx := c.Request.Context()
	reset := ""
	if last != "" {
		p, ok := parsePoint(last, feed == "")
		if ok {
			st.point, st.catchUp = p, true
		} else {
			reset = "history-unavailable" // not an id of these journals
		}
	}
	if !st.catchUp {
		p, err := b.startPoint(ctx, feed)
		if err != nil {
			release()
			unwatch()
			b.failErr(c, err)
			return
		}
		st.point = p
	}
	streamHeaders(h)
	hello := "retry: " + strconv.Itoa(reconnectMillis) + "\n"
	switch {
	case reset != "":
		data, _ := json.Marshal(ResetJSON{Reason: reset})
		hello += "event: reset\nid: " + st.point.String() + "\ndata: " + string(data) + "\n"
	case last == "":
		hello += "id: " + st.point.String() + "\n" // sets the resume point without an event
	}
	hello += "\n"
	s := st
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
		}, release, unwatch)
		if !ok {
			_ = conn.Close()
		}
		return
	}
	defer release()
	defer unwatch()
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

// startPoint returns the point of a stream that starts now: after the
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

// stream is one event stream's state.
type stream struct {
	b     *Bridge
	w     *watch
	feed  string // the one feed, or "" for several
	match func(string) bool
	buf   bytes.Buffer

	// point is what the client has; local its place in the ring;
	// catchUp asks for the journals to be read from point.
	point   point
	local   position
	catchUp bool

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
// a heartbeat probe finds it gone), or the bridge stops. Live events come
// from the ring; whatever the ring cannot tell (a resume, a reconnect to
// Redis, events evicted while the stream was behind) is read from the
// journals, and only what the journals cannot tell either resets the
// stream.
func (s *stream) run(gone <-chan struct{}) {
	heartbeat := time.NewTicker(s.b.cfg.Events.Heartbeat)
	defer heartbeat.Stop()
	for {
		s.buf.Reset()
		n := 0
		if s.catchUp {
			s.catchUp = false
			s.local = s.b.ring.now() // what comes meanwhile is read from the ring after
			var ok bool
			if n, ok = s.replay(); !ok {
				return
			}
		} else {
			batch, next, lost := s.b.ring.read(s.local, s.match, batchSize)
			if lost {
				s.catchUp = true
				continue
			}
			s.local = next
			for _, e := range batch {
				if !s.point.delivered(e.feed, e.rev) {
					s.point.advance(e.feed, e.rev)
					_ = sse.Encode(&s.buf, sse.Event{Event: e.typ, Id: s.point.String(), Data: e.data})
					n++
				}
			}
		}
		if s.buf.Len() > 0 {
			if !s.send(s.buf.Bytes()) {
				return
			}
			s.b.hub.Metrics.EventOut(s.b.Name(), n)
			continue // drain what is kept before waiting
		}
		if s.buf.Cap() > 64<<10 {
			s.buf = bytes.Buffer{} // do not keep a burst's buffer while idle
		}
		select {
		case <-s.w.ch:
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

// replay reads what the journals hold after the stream's point and writes
// it into s.buf (sending as it fills), or a reset when they cannot tell
// it; false when the client is gone.
func (s *stream) replay() (int, bool) {
	ctx, cancel := context.WithTimeout(s.b.stopping, 30*time.Second)
	defer cancel()
	feeds := []string{s.feed}
	if s.feed == "" {
		all, err := s.b.hub.Store.Feeds(ctx)
		if err != nil {
			s.catchUp = true // Redis is away: try again on the next wake
			return 0, true
		}
		feeds = slices.DeleteFunc(all, func(f string) bool { return !s.match(f) })
	}
	entries, err := s.b.replay(ctx, s.point, feeds)
	var gap *thoonk.GapError
	switch {
	case errors.As(err, &gap) || errors.Is(err, errTooMany):
		reason := "too-far-behind"
		if gap != nil && gap.Reason == "unknown" {
			reason = "history-unavailable"
		}
		p, perr := s.b.startPoint(ctx, s.feed)
		if perr != nil {
			s.catchUp = true
			return 0, true
		}
		s.point = p
		data, _ := json.Marshal(ResetJSON{Reason: reason})
		_ = sse.Encode(&s.buf, sse.Event{Event: "reset", Id: s.point.String(), Data: data})
		return 1, true
	case err != nil:
		s.catchUp = true // Redis is away: try again on the next wake
		return 0, true
	}
	n := 0
	for _, e := range entries {
		s.point.advance(e.feed, e.rev)
		_ = sse.Encode(&s.buf, sse.Event{Event: e.typ, Id: s.point.String(), Data: e.data})
		n++
		if s.buf.Len() > 64<<10 {
			if !s.send(s.buf.Bytes()) {
				return n, false
			}
			s.buf.Reset()
		}
	}
	return n, true
}
