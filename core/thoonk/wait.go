package thoonk

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoResult means a job finished but its result cannot be known (it was
// finished without one, or while the listener was disconnected and no
// status record holds it).
var ErrNoResult = errors.New("job finished without a known result")

// ResultWaiter waits for one job's result. Register it with Expect before
// putting the job, so that a result published at once is not missed.
type ResultWaiter struct {
	l    *Listener
	key  jobKey
	res  chan []byte
	kick chan struct{}
}

// Expect registers a waiter for the result of job id on job feed feed.
// Call Cancel (or Wait) to unregister it.
func (l *Listener) Expect(feed, id string) *ResultWaiter {
	w := &ResultWaiter{l: l, key: jobKey{feed, id}, res: make(chan []byte, 1), kick: make(chan struct{}, 1)}
	l.mu.Lock()
	ws := l.waiters[w.key]
	if ws == nil {
		ws = map[*ResultWaiter]struct{}{}
		l.waiters[w.key] = ws
	}
	ws[w] = struct{}{}
	l.mu.Unlock()
	return w
}

func (w *ResultWaiter) deliver(result []byte) {
	select {
	case w.res <- result:
	default:
	}
}

// poke asks the waiter to re-check the job's state (after a reconnect).
func (w *ResultWaiter) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Cancel unregisters the waiter.
func (w *ResultWaiter) Cancel() {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	if ws := w.l.waiters[w.key]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(w.l.waiters, w.key)
		}
	}
}

// Wait returns the job's result once it is published. When ctx ends first
// it returns an error wrapping ErrTimeout (deadline) or ctx's error. After
// a listener reconnect it re-reads the job's state, so a result published
// while disconnected is still found in the job's status record. Wait
// unregisters the waiter.
func (w *ResultWaiter) Wait(ctx context.Context) ([]byte, error) {
	defer w.Cancel()
	for {
		select {
		case r := <-w.res:
			return r, nil
		case <-w.kick:
			select {
			case r := <-w.res:
				return r, nil
			default:
			}
			st, err := w.l.s.Jobs(w.key.feed).State(ctx, w.key.id)
			if err != nil {
				continue
			}
			switch {
			case st.HasResult:
				return st.Result, nil
			case st.State == JobFinished:
				return nil, fmt.Errorf("job %s in %q: %w", w.key.id, w.key.feed, ErrNoResult)
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("wait for job %s in %q: %w", w.key.id, w.key.feed, ErrTimeout)
			}
			return nil, ctx.Err()
		}
	}
}
