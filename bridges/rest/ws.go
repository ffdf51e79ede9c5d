package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// Limits of one WebSocket.
const (
	// maxSubscriptions bounds the subscriptions of one socket.
	maxSubscriptions = 64
	// maxAwaited bounds the actions of one socket waiting for a result.
	maxAwaited = 64
	// maxSubIDLen bounds a subscription's name.
	maxSubIDLen = 64
)

// WSClientMessage is what a client sends on /v1/ws, one JSON object per
// text message: a subscription, its end, or an action (with the fields of
// ActionRequest).
type WSClientMessage struct {
	// Type is subscribe, unsubscribe or action.
	Type string `json:"type"`
	// Sub names a subscription (the client's choice, 1-64 characters).
	Sub string `json:"sub,omitempty"`
	// Feed subscribes to one feed (as GET /v1/feeds/{feed}/events), or
	// is the feed an action applies to.
	Feed string `json:"feed,omitempty"`
	// Feeds subscribes to the readable feeds matching these glob patterns
	// (as GET /v1/events?feeds=); default every feed.
	Feeds []string `json:"feeds,omitempty"`
	// LastEventID resumes a subscription after this event id (the same
	// ids as the SSE streams'; an id from an SSE stream works too).
	LastEventID string `json:"last_event_id,omitempty"`
	// Ref is the client's reference for an action, echoed in its answers.
	Ref string `json:"ref,omitempty"`
	// Verb is the action's verb: publish, edit, retract, move or custom.
	Verb string `json:"verb,omitempty"`
	// Wait is how many seconds to wait for the action's result (default
	// and cap: rest.max_wait).
	Wait *int `json:"wait,omitempty"`
	ActionRequest
}

// WSServerMessage is what the bridge sends on /v1/ws.
type WSServerMessage struct {
	// Type is subscribed, event, reset, unsubscribed (subscriptions),
	// accepted, result, timeout (actions) or error.
	Type string `json:"type"`
	Sub  string `json:"sub,omitempty"`
	Ref  string `json:"ref,omitempty"`
	// Event is an event's type: publish, edit, retract, position, delete.
	Event string `json:"event,omitempty"`
	// ID is the resume position after this message (last_event_id).
	ID string `json:"id,omitempty"`
	// Data is an event's EventJSON or a reset's ResetJSON.
	Data json.RawMessage `json:"data,omitempty"`
	// Job is an action's job: queued once stored, finished with its result.
	Job *core.JobStatus `json:"job,omitempty"`
	// Problem says what went wrong (the REST problem of the same request).
	Problem *Problem `json:"problem,omitempty"`
}

// websocket serves /v1/ws: live events of subscribed feeds and actions
// with their results on one connection. The upgrade request went through
// the same authentication and rate limit as every request; the socket
// takes one of the events.max_streams slots, like an SSE stream, and
// events are read from the same follower as SSE streams (same ids, same
// replay, same resets). Each subscribe and action message takes one
// request from the actor's rate limit bucket.
func (b *Bridge) websocket(c *gin.Context) {
	if !strings.EqualFold(c.GetHeader("Upgrade"), "websocket") {
		c.Header("Upgrade", "websocket")
		c.Header("Connection", "Upgrade")
		fail(c, "upgrade-required", "connect with a WebSocket client")
		return
	}
	if o := c.GetHeader("Origin"); o != "" && !b.originAllowed(o, c.Request.Host) {
		fail(c, "forbidden", "this origin is not in rest.cors.allowed_origins")
		return
	}
	release, ok := b.acquireStream(c)
	if !ok {
		return
	}
	conn, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // the origin was checked above, as CORS checks it
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		release()
		return // Accept answered the request
	}
	conn.SetReadLimit(b.cfg.MaxBodyBytes + 4096)
	s := &socket{b: b, conn: conn, actor: actorOf(c), subs: map[string]*subscription{}}
	s.limitKey, s.rate = "ip:"+c.ClientIP(), b.cfg.RateLimit.PerIP
	if s.actor.ID != core.Anonymous {
		s.limitKey, s.rate = "token:"+s.actor.ID, b.cfg.RateLimit.PerToken
	}
	if !b.goStream(s.serve, release) {
		_ = conn.Close(websocket.StatusGoingAway, "the bridge is stopping")
	}
}

// originAllowed applies the CORS policy to a browser's origin: its own
// host, or one of cors.allowed_origins.
func (b *Bridge) originAllowed(origin, host string) bool {
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, host) {
		return true
	}
	for _, o := range b.cfg.CORS.AllowedOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	return false
}

// socket is one WebSocket's state.
type socket struct {
	b        *Bridge
	conn     *websocket.Conn
	actor    core.Actor
	limitKey string
	rate     core.Rate

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	subs    map[string]*subscription
	awaited int
}

// subscription is one subscription of a socket.
type subscription struct {
	f    *follower
	stop context.CancelFunc
	done chan struct{}
}

// serve reads the client's messages until it leaves, a write fails or
// the bridge stops; heartbeats are pings that must be answered.
func (s *socket) serve() {
	s.ctx, s.cancel = context.WithCancel(s.b.stopping)
	defer func() {
		s.cancel()
		s.wg.Wait()
		if s.b.stopping.Err() != nil {
			_ = s.conn.Close(websocket.StatusGoingAway, "the bridge is stopping")
		} else {
			_ = s.conn.CloseNow()
		}
	}()
	s.wg.Go(s.heartbeat)
	for {
		typ, data, err := s.conn.Read(s.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			s.problem("", "", "bad-request", "send JSON text messages")
			continue
		}
		var m WSClientMessage
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil || !atEOF(dec) {
			s.problem("", "", "bad-request", "a message is one JSON object of the WSClientMessage schema (see /v1/openapi.json)")
			continue
		}
		if m.Type == "unsubscribe" {
			s.unsubscribe(m.Sub)
			continue
		}
		if m.Type != "subscribe" && m.Type != "action" {
			s.problem(m.Sub, m.Ref, "bad-request", fmt.Sprintf("unknown type %q: use subscribe, unsubscribe or action", m.Type))
			continue
		}
		if ok, wait := s.b.limits.Allow(s.limitKey, s.rate); !ok {
			s.problem(m.Sub, m.Ref, "rate-limited", "too many requests; retry after "+core.RetryAfter(wait)+"s")
			continue
		}
		if m.Type == "subscribe" {
			s.subscribe(m)
		} else {
			s.act(m)
		}
	}
}

func (s *socket) heartbeat() {
	t := time.NewTicker(s.b.cfg.Events.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.Events.WriteTimeout)
			err := s.conn.Ping(ctx)
			cancel()
			if err != nil {
				s.cancel() // the client is gone, or stopped reading
				return
			}
		}
	}
}

// send writes a message within events.write_timeout; a client that stops
// reading this long is dropped, as an SSE stream's is.
func (s *socket) send(m WSServerMessage) bool {
	data, _ := json.Marshal(m) // cannot fail: API types only
	ctx, cancel := context.WithTimeout(s.ctx, s.b.cfg.Events.WriteTimeout)
	defer cancel()
	if err := s.conn.Write(ctx, websocket.MessageText, data); err != nil {
		s.cancel()
		return false
	}
	return true
}

// problem sends an error message with a problem of kind k.
func (s *socket) problem(sub, ref, k, detail string) {
	p := newProblem(k, 0, detail)
	p.Instance = "/v1/ws"
	s.send(WSServerMessage{Type: "error", Sub: sub, Ref: ref, Problem: &p})
}

// fail sends the problem of err (errors that are not the client's are
// logged and shown as unavailable, as on every route).
func (s *socket) fail(sub, ref string, err error) {
	if k, detail, ok := problemOf(err); ok {
		s.problem(sub, ref, k, detail)
		return
	}
	if s.ctx.Err() == nil {
		s.b.hub.Log.Error("rest: websocket request failed", "err", err)
	}
	s.problem(sub, ref, "unavailable", "the feed store did not answer; retry later")
}

// subscribe starts a subscription: the same feeds, checks and event
// source as the SSE routes.
func (s *socket) subscribe(m WSClientMessage) {
	if m.Sub == "" || len(m.Sub) > maxSubIDLen || thoonk.ValidateText("sub", m.Sub, maxSubIDLen) != nil {
		s.problem(m.Sub, m.Ref, "bad-request", "name the subscription: sub is 1-64 printable characters")
		return
	}
	var (
		feed  string
		pats  []thoonk.Pattern
		match func(string) bool
	)
	switch {
	case m.Feed != "" && len(m.Feeds) > 0:
		s.problem(m.Sub, m.Ref, "bad-request", "subscribe to one feed or to feeds patterns, not both")
		return
	case m.Feed != "":
		feed = m.Feed
		if err := thoonk.ValidateFeedName(feed); err != nil {
			s.fail(m.Sub, m.Ref, err)
			return
		}
		if !s.b.exposed(s.actor, feed) {
			s.fail(m.Sub, m.Ref, thoonk.ErrFeedNotFound)
			return
		}
		if _, err := s.b.hub.Store.Type(s.ctx, feed); err != nil {
			s.fail(m.Sub, m.Ref, err)
			return
		}
		match = func(f string) bool { return f == feed }
	default:
		var err error
		if pats, match, err = s.b.patternMatch(s.actor, m.Feeds); err != nil {
			s.problem(m.Sub, m.Ref, "bad-request", "feeds: "+err.Error())
			return
		}
	}
	s.mu.Lock()
	_, dup := s.subs[m.Sub]
	full := len(s.subs) >= maxSubscriptions
	var sub *subscription
	var ferr error
	if !dup && !full {
		var f *follower
		if f, ferr = s.b.follow(s.ctx, feed, pats, m.LastEventID, match); ferr == nil {
			ctx, stop := context.WithCancel(s.ctx)
			sub = &subscription{f: f, stop: stop, done: make(chan struct{})}
			s.subs[m.Sub] = sub
			s.wg.Go(func() { s.follow(ctx, m.Sub, sub, m.LastEventID == "") })
		}
	}
	s.mu.Unlock()
	if ferr != nil {
		s.fail(m.Sub, m.Ref, ferr)
		return
	}
	switch {
	case dup:
		s.problem(m.Sub, m.Ref, "conflict", "a subscription of this name is open: unsubscribe first")
	case full:
		s.problem(m.Sub, m.Ref, "too-large", fmt.Sprintf("at most %d subscriptions per socket", maxSubscriptions))
	}
}

// follow sends one subscription's events until it ends: first subscribed
// (with the resume id, when the client gave none), then what was missed
// after last_event_id or a reset, then live events.
func (s *socket) follow(ctx context.Context, name string, sub *subscription, fresh bool) {
	defer close(sub.done)
	defer sub.f.close()
	hello := WSServerMessage{Type: "subscribed", Sub: name}
	if fresh {
		hello.ID = sub.f.id()
	}
	if !s.send(hello) {
		return
	}
	for {
		frames := sub.f.next(batchSize)
		for _, fr := range frames {
			m := WSServerMessage{Type: "event", Sub: name, Event: fr.event, ID: fr.id, Data: fr.data}
			if fr.event == "reset" {
				m.Type, m.Event = "reset", ""
			}
			if !s.send(m) {
				return
			}
		}
		if len(frames) > 0 {
			s.b.hub.Metrics.EventOut(s.b.Name(), len(frames))
			continue
		}
		select {
		case <-sub.f.wake():
		case <-ctx.Done():
			return
		}
	}
}

// unsubscribe ends a subscription; its last message is unsubscribed.
func (s *socket) unsubscribe(name string) {
	s.mu.Lock()
	sub := s.subs[name]
	delete(s.subs, name)
	s.mu.Unlock()
	if sub == nil {
		s.problem(name, "", "not-found", "no open subscription of this name")
		return
	}
	sub.stop()
	<-sub.done
	s.send(WSServerMessage{Type: "unsubscribed", Sub: name})
}

// act checks and stores an action (in the order the client sent them),
// answers accepted once its job is in Redis, then its result (or timeout
// when the wait runs out: the job stays stored, GET /v1/jobs tells).
func (s *socket) act(m WSClientMessage) {
	act, err := m.ActionRequest.action(m.Verb)
	if err != nil {
		s.fail("", m.Ref, err)
		return
	}
	act.Feed, act.Actor = m.Feed, s.actor
	wait := s.b.cfg.MaxWait
	if m.Wait != nil {
		wait = seconds(max(*m.Wait, 0), s.b.cfg.MaxWait)
	}
	if err := s.b.checkAction(s.ctx, act); err != nil {
		s.fail("", m.Ref, err)
		return
	}
	s.mu.Lock()
	busy := wait > 0 && s.awaited >= maxAwaited
	if wait > 0 && !busy {
		s.awaited++
	}
	s.mu.Unlock()
	if busy {
		s.problem("", m.Ref, "rate-limited", fmt.Sprintf("%d actions are waiting for their results: wait for some, or send wait: 0", maxAwaited))
		return
	}
	t, w, err := s.b.store(s.ctx, act, wait > 0)
	if err != nil {
		s.release(wait)
		s.fail("", m.Ref, err)
		return
	}
	st := submitted(t, nil)
	if !s.send(WSServerMessage{Type: "accepted", Ref: m.Ref, Job: &st}) || w == nil {
		if w != nil {
			w.Cancel()
			s.release(wait)
		}
		return
	}
	s.wg.Go(func() {
		defer s.release(wait)
		res := s.b.awaitResult(s.ctx, w, wait)
		if s.ctx.Err() != nil {
			return
		}
		st := submitted(t, res)
		typ := "result"
		if res == nil {
			typ = "timeout"
		}
		s.send(WSServerMessage{Type: typ, Ref: m.Ref, Job: &st})
	})
}

func (s *socket) release(wait time.Duration) {
	if wait > 0 {
		s.mu.Lock()
		s.awaited--
		s.mu.Unlock()
	}
}

// patternMatch compiles the glob patterns of an events request (default
// every feed) and returns what the actor may follow of them.
func (b *Bridge) patternMatch(actor core.Actor, globs []string) ([]thoonk.Pattern, func(string) bool, error) {
	if len(globs) == 0 {
		globs = []string{"*"}
	}
	pats := make([]thoonk.Pattern, 0, len(globs))
	for _, g := range globs {
		p, err := thoonk.CompilePattern(g)
		if err != nil {
			return nil, nil, err
		}
		pats = append(pats, p)
	}
	return pats, func(f string) bool {
		for _, p := range pats {
			if p.Match(f) {
				return b.exposed(actor, f)
			}
		}
		return false
	}, nil
}
