package xmpp

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/feedbridge/feedbridge/core"
	"github.com/feedbridge/feedbridge/core/thoonk"
)

// perTurn is how many messages of one node go out before the next node
// with pending notifications gets its turn.
const perTurn = 32

// delivery is one notification (an event, maybe a delay stamp) for some
// subscribers of one node.
type delivery struct {
	// body is the notification's payload, encoded once for every
	// recipient.
	body []byte
	to   []string
	next int    // index of the first recipient not yet sent to
	id   string // message ids are id-<index>
	seq  uint64 // order of arrival across nodes, for the memory budget
	size int64  // bytes held: the encoded body and the recipients
	// sent, when set, runs once every recipient was sent the notification.
	sent func()
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
// dropped; when the deliveries of every node together hold more than
// maxBytes (encoded notifications and recipient lists), the oldest
// delivery of any node is dropped, until they fit again (the newest one
// is always kept). A dropped delivery's remaining recipients miss that
// notification: they are counted (dropped, the metric
// feedbridge_xmpp_notifications_dropped_total) and logged; the newest
// state always gets through, and subscribers can fetch what they missed.
type notifier struct {
	from, msgType string
	size          int
	maxBytes      int64
	timeout       time.Duration
	log           *slog.Logger
	metrics       *core.Metrics
	conns         *conns
	lease         *core.Lease // nil: the process is alone

	// buf is the sender's write buffer (its goroutine only).
	buf []byte

	mu     sync.Mutex
	queues map[string]*nodeQueue
	ring   []*nodeQueue // nodes with pending deliveries, in turn order
	seq    uint64
	wake   chan struct{}

	pending  atomic.Int64  // messages waiting
	bytes    atomic.Int64  // bytes the waiting deliveries hold
	dropped  atomic.Uint64 // messages dropped by the overflow policy
	lastWarn time.Time
}

func newNotifier(cfg Config, c *conns, log *slog.Logger, m *core.Metrics) *notifier {
	return &notifier{from: cfg.JID, msgType: cfg.NotificationType, size: cfg.QueueSize, maxBytes: int64(cfg.QueueBytes),
		timeout: cfg.writeTimeout, conns: c, log: log, metrics: m,
		queues: map[string]*nodeQueue{}, wake: make(chan struct{}, 1)}
}

// push queues body for the given recipients of feed's node, applying
// the overflow policy; sent, when not nil, runs once every recipient was
// sent it (with no recipient: once the node's deliveries queued before
// are done, or at once when there are none). It never blocks.
func (n *notifier) push(feed string, body []xml.Token, to []string, sent func()) {
	if len(to) == 0 {
		if sent != nil {
			n.afterPending(feed, sent)
		}
		return
	}
	raw := encodeTokens(body)
	size := int64(len(raw))
	for _, j := range to {
		size += int64(len(j))
	}
	d := &delivery{body: raw, to: to, id: thoonk.NewID()[:16], size: size, sent: sent}
	n.mu.Lock()
	q := n.queues[feed]
	if q == nil {
		q = &nodeQueue{feed: feed}
		n.queues[feed] = q
		n.ring = append(n.ring, q)
	}
	if len(q.pending) >= n.size {
		n.drop(q, "queue_size")
	}
	n.seq++
	d.seq = n.seq
	q.pending = append(q.pending, d)
	n.pending.Add(int64(len(to)))
	n.bytes.Add(size)
	for n.bytes.Load() > n.maxBytes {
		oldest := n.oldest()
		if oldest.pending[0] == d {
			break
		}
		n.drop(oldest, "queue_bytes")
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// afterPending runs fn once the deliveries of feed's node queued so far
// are done (at once when there are none). If the last of them is dropped
// by the overflow policy, fn does not run.
func (n *notifier) afterPending(feed string, fn func()) {
	n.mu.Lock()
	if q := n.queues[feed]; q != nil && len(q.pending) > 0 {
		last := q.pending[len(q.pending)-1]
		if prev := last.sent; prev != nil {
			last.sent = func() { prev(); fn() }
		} else {
			last.sent = fn
		}
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	fn()
}

// oldest returns the node whose head delivery came first; n.mu is held
// and some node has a pending delivery.
func (n *notifier) oldest() *nodeQueue {
	var best *nodeQueue
	for _, q := range n.ring {
		if len(q.pending) > 0 && (best == nil || q.pending[0].seq < best.pending[0].seq) {
			best = q
		}
	}
	return best
}

// drop removes q's oldest delivery under the overflow policy of limit
// (the config key that was exceeded): counted, and logged at most once
// a minute. n.mu is held.
func (n *notifier) drop(q *nodeQueue, limit string) {
	old := q.pending[0]
	q.pending[0] = nil
	q.pending = q.pending[1:]
	lost := len(old.to) - old.next
	n.pending.Add(-int64(lost))
	n.bytes.Add(-old.size)
	n.dropped.Add(uint64(lost))
	if time.Since(n.lastWarn) > time.Minute {
		n.lastWarn = time.Now()
		n.log.Warn("xmpp: notifications over "+limit+"; dropped the oldest notification",
			"feed", q.feed, "recipients_missed", lost, "queue_size", n.size, "queue_bytes", n.maxBytes,
			"dropped_total", n.dropped.Load())
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
		if done := n.advance(q, d, to); done != nil {
			done()
		}
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

// advance records recipients [d.next, to) as sent and passes the turn
// on; once d went to every recipient, it returns d's sent function (to
// run without the lock held).
func (n *notifier) advance(q *nodeQueue, d *delivery, to int) (done func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(q.pending) > 0 && q.pending[0] == d { // not dropped meanwhile
		n.pending.Add(-int64(to - d.next))
		d.next = to
		if d.next >= len(d.to) {
			q.pending[0] = nil
			q.pending = q.pending[1:]
			n.bytes.Add(-d.size)
			done = d.sent
		}
	}
	n.ring = append(n.ring[1:], q)
	return done
}

// write sends messages to recipients [from, to) of d in one write: the
// payload was encoded once (push), and each message around it is written
// as bytes in the stream's default namespace, so a fan-out to thousands
// of subscribers costs a copy per recipient instead of an XML encoding.
func (n *notifier) write(sess *xmpp.Session, d *delivery, from, to int) error {
	buf := n.buf[:0]
	for i := from; i < to; i++ {
		buf = append(buf, `<message from="`...) // in the stream's default namespace
		buf = appendAttr(buf, n.from)
		buf = append(buf, `" to="`...)
		buf = appendAttr(buf, d.to[i])
		buf = append(buf, `" type="`...)
		buf = appendAttr(buf, n.msgType)
		buf = append(buf, `" id="`...)
		buf = append(buf, d.id...)
		buf = append(buf, '-')
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, `">`...)
		buf = append(buf, d.body...)
		buf = append(buf, `</message>`...)
	}
	n.buf = buf
	if cap(n.buf) > 1<<20 {
		n.buf = nil // do not keep a large item's buffer
	}
	return sendRaw(n.lease, sess, n.timeout, buf)
}

// appendAttr appends s escaped for a double-quoted attribute value.
func appendAttr(b []byte, s string) []byte {
	var w bytes.Buffer
	if strings.ContainsAny(s, "<>&\"'\t\n\r") || !utf8.ValidString(s) {
		_ = xml.EscapeText(&w, []byte(s))
		return append(b, w.Bytes()...)
	}
	return append(b, s...)
}

// errLeaseLost refuses a write once another process may lead the component.
var errLeaseLost = errors.New("the fleet lease was lost: another bridge process leads the component")

// send writes stanzas to the session and flushes them (see output).
func send(lease *core.Lease, sess *xmpp.Session, timeout time.Duration, stanzas ...[]xml.Token) error {
	return output(lease, sess, timeout, func(_ net.Conn, w xmlstream.TokenWriteFlusher) error {
		for _, st := range stanzas {
			if _, err := xmlstream.Copy(w, readTokens(st)); err != nil {
				return err
			}
		}
		return w.Flush()
	})
}

// sendRaw writes encoded stanzas to the session's connection (see output).
func sendRaw(lease *core.Lease, sess *xmpp.Session, timeout time.Duration, p []byte) error {
	return output(lease, sess, timeout, func(conn net.Conn, _ xmlstream.TokenWriteFlusher) error {
		_, err := conn.Write(p)
		return err
	})
}

// output runs write holding the session's output lock (nothing else is
// written meanwhile, and the session's encoder holds nothing unflushed:
// every writer flushes before it lets go), with the write bounded by
// timeout; first it checks that this process still leads the component
// (lease; nil when alone), else it writes nothing and closes the
// connection. A failed write may have left half a stanza on the stream, so
// it closes the connection: the session ends and the component
// reconnects.
//
// (mellium's Send takes a context, but ends a write deadline it set from
// that context in a goroutine that can fire after the call returned,
// failing a later, unrelated write; so writes here never use it.)
func output(lease *core.Lease, sess *xmpp.Session, timeout time.Duration, write func(net.Conn, xmlstream.TokenWriteFlusher) error) (err error) {
	conn := sess.Conn()
	w := sess.TokenWriter()
	if !lease.Valid() { // checked under the output lock: no write follows it
		_ = w.Close()
		_ = conn.Close()
		return errLeaseLost
	}
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
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	return write(conn, w)
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
