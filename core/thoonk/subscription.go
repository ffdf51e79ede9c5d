package thoonk

import (
	"context"
	"errors"
	"sync"
)

// DefaultQueueSize is a subscription's queue capacity when none is given.
const DefaultQueueSize = 1024

// Subscription is one consumer's view of the event stream: the events of
// one feed, of the feeds matching a pattern, or of every feed, in the order
// the listener received them, plus every EventResync.
//
// Its queue is bounded. Overflow policy: when an event arrives at a full
// queue, the queue is emptied and replaced by a single EventResync
// (ResyncOverflow, carrying the dropped event's Seq); the consumer must
// reload its state, which already reflects every dropped event. The
// listener never waits for a consumer.
type Subscription struct {
	l       *Listener
	feed    string  // exact feed, or
	pat     Pattern // pattern, or neither (all feeds)
	journal bool    // journal item events instead of the schema's
	both    bool    // journal item events and the schema's
	notify  chan struct{}
	done    chan struct{} // closed by Close
	once    sync.Once

	mu      sync.Mutex
	buf     []Event
	head, n int
	closed  bool
}

func newSubscription(l *Listener, size int) *Subscription {
	if size <= 0 {
		size = DefaultQueueSize
	}
	return &Subscription{l: l, buf: make([]Event, size), notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// wants reports whether the subscription takes ev: journal item events go
// to journal subscriptions only, the schema's item events to the others.
func (s *Subscription) wants(ev Event) bool {
	if s.both {
		return true
	}
	switch ev.Type {
	case EventPublish, EventEdit, EventRetract, EventPosition:
		return (ev.Rev != "") == s.journal
	case EventDelete:
		return ev.Rev == "" || s.journal
	}
	return true
}

// push queues ev, applying the overflow policy. Called by the listener.
func (s *Subscription) push(ev Event) {
	if !s.wants(ev) {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.n == len(s.buf) {
		clear(s.buf)
		s.head, s.n = 0, 0
		s.l.overflows.Add(1)
		if ev.Type != EventResync {
			ev = Event{Type: EventResync, Reason: ResyncOverflow, Seq: ev.Seq, At: ev.At}
		}
	}
	s.buf[(s.head+s.n)%len(s.buf)] = ev
	s.n++
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// TryNext returns the next queued event without waiting.
func (s *Subscription) TryNext() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return Event{}, false
	}
	ev := s.buf[s.head]
	s.buf[s.head] = Event{}
	s.head = (s.head + 1) % len(s.buf)
	s.n--
	return ev, true
}

// Ready returns a channel that receives a value after events were queued;
// use it in a select, then drain with TryNext.
func (s *Subscription) Ready() <-chan struct{} { return s.notify }

// ErrClosed is returned by Next once the subscription is closed.
var ErrClosed = errors.New("subscription closed")

// Next waits for the next event, the end of ctx, or Close.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		if ev, ok := s.TryNext(); ok {
			return ev, nil
		}
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.done:
			return Event{}, ErrClosed
		case <-s.notify:
		}
	}
}

// Len returns the number of queued events.
func (s *Subscription) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Close stops the subscription; queued events are discarded and a Next
// waiting returns ErrClosed. Close may be called more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.l.unsubscribe(s)
		s.mu.Lock()
		s.closed = true
		clear(s.buf)
		s.n = 0
		s.mu.Unlock()
		close(s.done)
	})
}
