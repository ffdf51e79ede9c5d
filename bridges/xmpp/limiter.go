package xmpp

import (
	"sync"

	"golang.org/x/time/rate"
)

// maxTracked bounds the senders the limiter remembers; past it, senders
// whose bucket is full again (idle ones) are forgotten.
const maxTracked = 100_000

// limiter is a token bucket per sender: a bare JID, or a domain.
type limiter struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	senders map[string]*rate.Limiter
}

// newLimiter returns a limiter, or nil (no limit) when perSecond is 0.
func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{every: rate.Limit(perSecond), burst: burst, senders: map[string]*rate.Limiter{}}
}

// allow takes one token from sender's bucket.
func (l *limiter) allow(sender string) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	lim := l.senders[sender]
	if lim == nil {
		if len(l.senders) >= maxTracked {
			for k, v := range l.senders {
				if v.Tokens() >= float64(l.burst) {
					delete(l.senders, k)
				}
			}
			if len(l.senders) >= maxTracked {
				clear(l.senders) // every sender is busy: start over rather than grow
			}
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.senders[sender] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}
