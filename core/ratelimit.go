package core

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token bucket: Rate requests per second, bursts up to Burst.
type Rate struct {
	// Rate is the sustained rate in requests per second; 0 turns the limit off.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may come at once.
	Burst int `yaml:"burst"`
}

// Validate checks a rate configured at key: a rate of 0 (no limit) or
// more, and a burst of at least 1 when the rate is set.
func (r Rate) Validate(sec *Section, key string) error {
	var errs []error
	if r.Rate < 0 {
		errs = append(errs, sec.Errorf(key+".rate", "must be 0 (no limit) or more requests per second"))
	}
	if r.Rate > 0 && r.Burst < 1 {
		errs = append(errs, sec.Errorf(key+".burst", "must be at least 1 when rate is set"))
	}
	return errors.Join(errs...)
}

// RateLimiter holds one token bucket per key (a token name, a client
// address), bounded in number: when full, buckets that refilled completely
// (indistinguishable from new ones) are dropped first, then arbitrary ones.
// It only decides; answering a refused request (HTTP 429) is the adapter's.
type RateLimiter struct {
	max int
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

// NewRateLimiter returns a limiter keeping at most maxKeys buckets (at
// least one).
func NewRateLimiter(maxKeys int) *RateLimiter {
	return &RateLimiter{max: max(maxKeys, 1), m: map[string]*rate.Limiter{}}
}

// Allow takes one request from key's bucket, created with r when new. When
// the bucket is empty it takes nothing and returns false with the time
// after which a request would be allowed. A zero Rate allows everything.
func (l *RateLimiter) Allow(key string, r Rate) (ok bool, retryAfter time.Duration) {
	if r.Rate <= 0 {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(rate.Limit(r.Rate), r.Burst)
		l.m[key] = lim
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() { // a burst of 0 never allows anything
		return false, time.Second
	}
	delay := res.DelayFrom(now)
	if delay > 0 {
		res.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// evict makes room for one bucket; l.mu is held.
func (l *RateLimiter) evict(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < l.max {
			break
		}
		delete(l.m, k)
	}
}

// RetryAfter formats a wait for the HTTP Retry-After header: whole
// seconds, rounded up, at least 1.
func RetryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

// ValidateTrustedProxies checks the proxies (IP addresses or CIDRs) at key
// whose X-Forwarded-For an adapter believes when it finds the client
// address that per-client limits key on.
func ValidateTrustedProxies(proxies []string, sec *Section, key string) error {
	var errs []error
	for i, p := range proxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			errs = append(errs, sec.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q is not an IP address or CIDR such as 10.0.0.0/8", p))
		}
	}
	return errors.Join(errs...)
}
