package xmpp

import (
	"context"
	"encoding/xml"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/feedbridge/feedbridge/core"
)

// perTurn is how many messages of one node go out before the next node
// with pending notifications gets its turn.
const perTurn = 32

// writeTimeout bounds one write to the server.
const writeTimeout = 10 * time.Second

// delivery is one notification (an event, maybe a delay stamp) for some
// subscribers of one node.
type delivery struct {
	body []xml.Token
	to   []string
	next int    // index of the first recipient not yet sent to
	id   string // message ids are id-<index>
}

// nodeQueue holds one node's pending deliveries, oldest first.
type nodeQueue struct {
	feed    string
	pending []*delivery
}

// notifier sends notifications, decoupled from the stanza handlers and
// from the event dispatcher. Each node has its own queue of at most size
// deliveries; nodes with pending work take turns, perTurn messages at a
// time, so a node with thousands of subscribers never holds back another
// node's notifications for more than one turn.
//
// Overflow policy: when a node's queue is full, its oldest delivery is
// dropped (its remaining recipients miss that notification), counted and
// logged; the newest state always gets through, and subscribers can fetch
// the items they missed.
type notifier struct {
	from, msgType string
	size          int
	log           *slog.Logger
	metrics       *core.Metrics
	conns         *conns

	mu     sync.Mutex
	queues map[string]*nodeQueue
	ring   []*nodeQueue // nodes with pending deliveries, in turn order
	wake   chan struct{}

	pending  atomic.Int64  // messages waiting
	dropped  atomic.Uint64 // messages dropped by the overflow policy
	lastWarn time.Time
}

func newNotifier(from, msgType string, size int, c *conns, log *slog.Logger, m *core.Metrics) *notifier {
	return &notifier{from: from, msgType: msgType, size: size, conns: c, log: log, metrics: m,
		queues: map[string]*nodeQueue{}, wake: make(chan struct{}, 1)}
}

// push queues body for the given recipients of feed's node; it never blocks.
func (n *notifier) push(feed string, body []xml.Token, to []string) {
	if len(to) == 0 {
		return
	}
	d := &delivery{body: body, to: to, id: core.NewID()[:16]}
	n.mu.Lock()
	q := n.queues[feed]
	if q == nil {
		q = &nodeQueue{feed: feed}
		n.queues[feed] = q
		n.ring = append(n.ring, q)
	}
	if len(q.pending) >= n.size {
		old := q.pending[0]
		q.pending = q.pending[1:]
		lost := len(old.to) - old.next
		n.pending.Add(-int64(lost))
		n.dropped.Add(uint64(lost))
		if time.Since(n.lastWarn) > time.Minute {
			n.lastWarn = time.Now()
			n.log.Warn("xmpp notification queue full; dropped the oldest notification",
				"feed", feed, "recipients_missed", lost, "queue_size", n.size, "dropped_total", n.dropped.Load())
		}
	}
	q.pending = append(q.pending, d)
	n.pending.Add(int64(len(to)))
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run sends queued notifications until ctx ends, waiting for a connected
// session when there is none; messages a failed write did not deliver are
// sent again on the next session.
func (n *notifier) run(ctx context.Context) {
	var failed *xmpp.Session
	for {
		q, d, from, to := n.take()
		if q == nil {
			select {
			case <-ctx.Done():
				return
			case <-n.wake:
				continue
			}
		}
		sess, err := n.conns.wait(ctx, failed)
		if err != nil {
			return
		}
		if err := n.write(sess, d, from, to); err != nil {
			n.log.Debug("xmpp notification write failed; resending after reconnect", "err", err)
			failed = sess
			continue
		}
		failed = nil
		n.advance(q, d, to)
		n.metrics.EventOut("xmpp", to-from)
	}
}

// take returns the next batch: the head delivery of the node whose turn it is.
func (n *notifier) take() (*nodeQueue, *delivery, int, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(n.ring) > 0 {
		q := n.ring[0]
		if len(q.pending) == 0 {
			n.ring = n.ring[1:]
			delete(n.queues, q.feed)
			continue
		}
		d := q.pending[0]
		return q, d, d.next, min(d.next+perTurn, len(d.to))
	}
	return nil, nil, 0, 0
}

// advance records recipients [d.next, to) as sent and passes the turn on.
func (n *notifier) advance(q *nodeQueue, d *delivery, to int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(q.pending) > 0 && q.pending[0] == d { // not dropped meanwhile
		n.pending.Add(-int64(to - d.next))
		d.next = to
		if d.next >= len(d.to) {
			q.pending[0] = nil
			q.pending = q.pending[1:]
		}
	}
	n.ring = append(n.ring[1:], q)
}

// write sends messages to recipients [from, to) of d in one flush.
func (n *notifier) write(sess *xmpp.Session, d *delivery, from, to int) error {
	msgs := make([][]xml.Token, 0, to-from)
	for i := from; i < to; i++ {
		msg := message(n.from, d.to[i], n.msgType, d.id+"-"+strconv.Itoa(i), nil)
		msgs = append(msgs, join(msg[:1], d.body, msg[1:]))
	}
	return send(sess, msgs...)
}

// send writes stanzas to the session and flushes them, holding the
// session's output lock and bounding the write with writeTimeout. A
// failed write may have left half a stanza on the stream, so it closes
// the connection: the session ends and the component reconnects.
//
// (mellium's Send takes a context, but ends a write deadline it set from
// that context in a goroutine that can fire after the call returned,
// failing a later, unrelated write; so writes here never use it.)
func send(sess *xmpp.Session, stanzas ...[]xml.Token) (err error) {
	conn := sess.Conn()
	w := sess.TokenWriter()
	defer func() {
		if err != nil {
			_ = conn.Close()
		}
		// cleared while the lock is held: once it is released, the
		// deadline may be another writer's
		_ = conn.SetWriteDeadline(time.Time{})
		if cerr := w.Close(); err == nil && cerr != nil {
			err = cerr
			_ = conn.Close()
		}
	}()
	_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, st := range stanzas {
		if _, err := xmlstream.Copy(w, readTokens(st)); err != nil {
			return err
		}
	}
	return w.Flush()
}

// conns holds the current component session for the goroutines that send.
type conns struct {
	mu      sync.Mutex
	cur     *xmpp.Session
	changed chan struct{} // closed when cur changes
}

func newConns() *conns { return &conns{changed: make(chan struct{})} }

func (c *conns) set(s *xmpp.Session) {
	c.mu.Lock()
	c.cur = s
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// wait returns the current session once there is one other than not.
func (c *conns) wait(ctx context.Context, not *xmpp.Session) (*xmpp.Session, error) {
	for {
		c.mu.Lock()
		s, ch := c.cur, c.changed
		c.mu.Unlock()
		if s != nil && s != not {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}
