package xmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// workerQueue bounds the requests waiting for each worker; a request
// arriving at a full queue is answered resource-constraint at once.
const workerQueue = 64

// Bridge is the XMPP adapter.
type Bridge struct {
	cfg Config

	current atomic.Pointer[service] // for the metrics collector
}

var _ core.Adapter = (*Bridge)(nil)

// Name returns "xmpp".
func (b *Bridge) Name() string { return "xmpp" }

// Run serves the component until ctx ends, in the one process of a fleet
// that holds the component's lease (the others stand by and take over
// when it is lost); it returns nil once every goroutine it started has
// stopped and the cursors are stored.
func (b *Bridge) Run(ctx context.Context, hub *core.Hub) error {
	hub.Metrics.Register(&collector{b: b}) // kept once: Register ignores repeats
	return hub.Lead(ctx, b.Name(), core.LeaseName("xmpp", b.cfg.JID), func(ctx context.Context, l *core.Lease) error {
		return b.lead(ctx, hub, l)
	})
}

// lead serves the component while this process holds its lease: it loads
// the subscriptions and notification cursors (every one, whichever
// process took them), connects (reconnecting with backoff and jitter
// whenever the connection is lost) and returns nil once ctx ends (the
// lease is lost, or the bridge stops).
func (b *Bridge) lead(ctx context.Context, hub *core.Hub, lease *core.Lease) error {
	c := newConns()
	s := newService(b.cfg, hub, c)
	s.lease, s.notify.lease, s.cursors.valid = lease, lease, lease.Valid
	b.current.Store(s)
	events := hub.Events.SubscribeWith(thoonk.SubscribeOptions{Queue: eventQueue, Journal: true}) // before loading: no event is missed
	defer events.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
		s.cursors.flushAtStop(ctx) // what was sent, so that the next start resumes there
	}()

	// The subscriptions and cursors are known before any request is served.
	for attempt := 0; ; attempt++ {
		err := s.subs.load(ctx)
		if err == nil {
			err = s.cursors.load(ctx)
		}
		if err == nil {
			break
		}
		d := b.cfg.Reconnect.Delay(attempt)
		hub.SetState(b.Name(), core.StateReconnecting, err)
		s.log.Warn("xmpp: load subscriptions", "err", err, "retry_in", d.Round(time.Millisecond))
		if thoonk.Sleep(ctx, d) != nil {
			return nil
		}
	}
	s.queues = make([]chan job, b.cfg.Workers)
	for i := range s.queues {
		q := make(chan job, workerQueue)
		s.queues[i] = q
		s.wg.Go(func() { s.work(ctx, q) })
	}
	s.wg.Go(func() { s.dispatch(ctx, events) })
	s.wg.Go(func() { s.notify.run(ctx) })
	s.wg.Go(func() { s.cursors.run(ctx) })

	attempt := 0
	for connected := false; ; {
		wasUp, err := s.connect(ctx, c, connected)
		if ctx.Err() != nil {
			return nil
		}
		connected = connected || wasUp
		if wasUp {
			attempt = 0
		}
		d := b.cfg.Reconnect.Delay(attempt)
		attempt++
		hub.SetState(b.Name(), core.StateReconnecting, err)
		s.log.Warn("xmpp: component connection lost", "server", b.cfg.Server, "jid", b.cfg.JID, "err", err,
			"retry_in", d.Round(time.Millisecond))
		if thoonk.Sleep(ctx, d) != nil {
			return nil
		}
	}
}

// connect runs one component connection until it fails or ctx ends;
// wasUp reports whether the handshake succeeded.
func (s *service) connect(ctx context.Context, c *conns, reconnect bool) (wasUp bool, err error) {
	addr, err := jid.Parse(s.domain)
	if err != nil {
		return false, fmt.Errorf("component jid: %w", err)
	}
	dialer := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: 15 * time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", s.cfg.Server)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	// hctx outlives the handshake: mellium clears the deadlines it set
	// from it in a goroutine that must not see it end early.
	hctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	sess, err := component.NewSession(hctx, addr, []byte(s.cfg.Secret.Reveal()), conn)
	if errors.Is(err, stream.Conflict) {
		_ = conn.Close()
		return false, fmt.Errorf("component %s is connected elsewhere (a bridge outside this fleet, or a leader that stopped answering; "+
			"Prosody's component_conflict_resolve = \"kick_old\" lets a new leader take over at once): %w", s.domain, err)
	}
	if err != nil {
		_ = conn.Close()
		return false, fmt.Errorf("component handshake as %s (check xmpp.jid and xmpp.secret against the server's Component entry): %w", s.domain, err)
	}
	c.set(sess)
	defer c.set(nil)
	if reconnect {
		s.hub.Metrics.Reconnect("xmpp")
	}
	s.hub.SetState("xmpp", core.StateUp, nil)
	s.log.Info("xmpp: component connected", "server", s.cfg.Server, "jid", s.domain)
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		force := time.AfterFunc(time.Second, func() { _ = conn.Close() })
		_ = sess.Close() // </stream:stream>, unless a stuck write holds the stream
		force.Stop()
		_ = conn.Close()
	})
	err = sess.Serve(handler{s: s, sess: sess})
	if !stop() {
		<-closed
	}
	_ = conn.Close()
	if err == nil {
		err = errors.New("the server closed the stream")
	}
	return true, err
}

// job is a request waiting for a worker.
type job struct {
	req  *request
	who  caller
	sess *xmpp.Session
}

// handler reads stanzas on the session's read loop: it parses IQ requests
// and hands them to the workers, answering at once only when a request is
// malformed, over its sender's or domain's rate limit, or finds the
// workers busy. Messages and presence are ignored.
//
// Those immediate answers go out with send, like every other write: under
// the session's output lock, bounded by the write timeout, the connection
// closed when the write fails. Writing through the session from the
// handler is safe in mellium v0.23.0: Serve holds only the input lock while
// the handler runs and takes the output lock lazily, when the handler first
// writes to its own encoder (which this handler never does), so it cannot
// deadlock; and Serve adds its own service-unavailable answer to an
// unanswered IQ only on client and server streams (jabber:client,
// jabber:server), never on a component stream, so an answer sent this way
// is the only one. (The handler's own encoder would hold the output lock
// until after the handler returns and Serve flushes, so no deadline set
// by the handler could cover that flush: a stalled server would block the
// read loop for good.)
type handler struct {
	s    *service
	sess *xmpp.Session
}

// HandleXMPP handles one top-level element of the stream.
func (h handler) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	s := h.s
	if start.Name != (xml.Name{Space: nsComponent, Local: "iq"}) {
		return nil
	}
	iq, err := readElement(t, *start, s.reqLimits)
	tooLarge := errors.Is(err, errTooLarge)
	if err != nil && !tooLarge {
		return err // the stream itself is broken
	}
	req := parseRequest(iq, tooLarge)
	if req.Op == opInvalid && req.Err == nil {
		return nil // a result or error: nothing to answer
	}
	s.hub.Metrics.RequestIn("xmpp")
	from, err := parseJID(req.From)
	if err != nil {
		s.log.Debug("xmpp: request without a usable sender", "from", req.From)
		return nil
	}
	if to, err := parseJID(req.To); err != nil || to.String() != s.domain {
		if req.To == "" {
			req.To = s.domain
		} else if req.Err == nil {
			req.Err = &stanzaError{Type: "cancel", Condition: "service-unavailable", Text: "no such entity"}
		}
	}
	who := caller{bare: from.Bare().String()}
	who.actor = core.Actor{Protocol: "xmpp", ID: who.bare}
	switch {
	// the sender's own limit first: a flooding account does not use up
	// the budget of the other accounts of its domain
	case !s.limiter.allow(who.bare):
		req.Err = errBusy("too many requests from " + who.bare + ": slow down")
	case !s.domains.allow(from.Domainpart()):
		req.Err = errBusy("too many requests from " + from.Domainpart() + ": slow down")
	case req.Err != nil:
	case !s.enqueue(job{req: req, who: who, sess: h.sess}):
		req.Err = errBusy("the service is busy: try again")
	default:
		return nil
	}
	return send(s.lease, h.sess, s.cfg.writeTimeout, iqReply(req, nil, req.Err))
}

// enqueue hands j to the worker of its sender, keeping one sender's
// requests in order; it reports false when that worker's queue is full.
func (s *service) enqueue(j job) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(j.who.bare))
	select {
	case s.queues[h.Sum32()%uint32(len(s.queues))] <- j:
		return true
	default:
		return false
	}
}

// work answers requests until ctx ends.
func (s *service) work(ctx context.Context, q <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			reply, after, later := s.handle(ctx, j.req, j.who)
			if later != nil {
				s.await(ctx, j, later)
				continue
			}
			s.reply(j, reply, after)
		}
	}
}

// await sends a reply that waits for its job's result from a goroutine of
// its own, so that the worker goes on with the requests behind it (the job
// is stored already, in its sender's order). When workers × 64 replies
// are waiting already, it waits on the worker instead: that worker's
// senders slow down rather than the goroutines growing without bound.
func (s *service) await(ctx context.Context, j job, later pending) {
	select {
	case s.waiting <- struct{}{}:
		s.wg.Go(func() {
			defer func() { <-s.waiting }()
			s.reply(j, later(ctx), nil)
		})
	default:
		s.reply(j, later(ctx), nil)
	}
}

// reply sends a request's reply, then runs after, if any, whether the
// reply went out or not (the request's change is made either way).
func (s *service) reply(j job, reply []xml.Token, after func()) {
	if err := send(s.lease, j.sess, s.cfg.writeTimeout, reply); err != nil {
		s.log.Debug("xmpp: reply not sent", "to", j.req.From, "err", err)
	}
	if after != nil {
		after()
	}
}

// parseJID parses a JID from an attribute.
func parseJID(s string) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, errors.New("no JID")
	}
	return jid.Parse(s)
}

// collector reports the notifier's queue and the subscriptions to
// Prometheus.
type collector struct{ b *Bridge }

var (
	descPending = prometheus.NewDesc("feedbridge_xmpp_notifications_pending",
		"Notification messages waiting to be sent.", nil, nil)
	descPendingBytes = prometheus.NewDesc("feedbridge_xmpp_notifications_pending_bytes",
		"Memory held by the notifications waiting to be sent (bounded by queue_bytes).", nil, nil)
	descDropped = prometheus.NewDesc("feedbridge_xmpp_notifications_dropped_total",
		"Notification messages dropped because a node's queue (queue_size) or all queues together (queue_bytes) were full.", nil, nil)
	descSubs = prometheus.NewDesc("feedbridge_xmpp_subscriptions",
		"Subscriptions to the component's nodes.", nil, nil)
)

// Describe sends the metrics' descriptions.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPending
	ch <- descPendingBytes
	ch <- descDropped
	ch <- descSubs
}

// Collect reads the current service's counters.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.current.Load()
	if s == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.notify.pending.Load()))
	ch <- prometheus.MustNewConstMetric(descPendingBytes, prometheus.GaugeValue, float64(s.notify.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.notify.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(descSubs, prometheus.GaugeValue, float64(s.subs.count()))
}
