package thoonk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoResult means a job finished but its result cannot be known (it was
// finished without one, or while the listener was disconnected and no
// status record holds it).
var ErrNoResult = errors.New("job finished without a known result")

// ResultWaiter waits for one job's result. Register it with Expect before
// putting the job, so that a result published at once is not missed.
type ResultWaiter struct {
	l     *Listener
	key   jobKey
	res   chan []byte
	kick  chan struct{}
	since time.Time
}

// Expect registers a waiter for the result of job id on job feed feed.
// Call Cancel (or Wait) to unregister it.
func (l *Listener) Expect(feed, id string) *ResultWaiter {
	w := &ResultWaiter{l: l, key: jobKey{feed, id}, res: make(chan []byte, 1), kick: make(chan struct{}, 1), since: time.Now()}
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
// while disconnected is still found in the job's status record; a job
// finished without a result (nothing is published then) is noticed within
// a second (see Listener.Run) and ends the wait with ErrNoResult. Wait
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
			case st.State == JobUnknown:
				// gone without a status record: a result published at this
				// very moment may still be on its way
				select {
				case r := <-w.res:
					return r, nil
				case <-time.After(200 * time.Millisecond):
					return nil, fmt.Errorf("job %s in %q is no longer in the job feed: %w", w.key.id, w.key.feed, ErrNoResult)
				case <-ctx.Done():
				}
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("wait for job %s in %q: %w", w.key.id, w.key.feed, ErrTimeout)
			}
			return nil, ctx.Err()
		}
	}
}

// sweepInterval is how often waiters are checked for jobs finished
// without a result.
const sweepInterval = 400 * time.Millisecond

// sweepWaiters notices jobs finished without a published result: every
// sweepInterval it checks, in one pipeline, whether the jobs of waiters
// registered for longer than that are still in their job feed, and pokes
// the waiters of those gone, which then read the job's state.
func (l *Listener) sweepWaiters(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var keys []jobKey
		l.mu.RLock()
		for k, ws := range l.waiters {
			for w := range ws {
				if time.Since(w.since) >= sweepInterval {
					keys = append(keys, k)
					break
				}
			}
		}
		l.mu.RUnlock()
		if len(keys) == 0 {
			continue
		}
		pipe := l.s.rdb.Pipeline()
		cmds := make([]*redis.BoolCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HExists(ctx, prefixItems+k.feed, k.id)
		}
		_, _ = pipe.Exec(ctx) // each command's error is read below
		l.mu.RLock()
		for i, k := range keys {
			if there, err := cmds[i].Result(); err == nil && !there {
				for w := range l.waiters[k] {
					w.poke()
				}
			}
		}
		l.mu.RUnlock()
	}
}
