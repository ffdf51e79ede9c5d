package rest

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/feedbridge/feedbridge/core"
)

// actorKey holds the request's core.Actor in the gin context.
const actorKey = "feedbridge.actor"

// actorOf returns the actor the auth middleware proved.
func actorOf(c *gin.Context) core.Actor { return c.MustGet(actorKey).(core.Actor) }

// tokenSet checks bearer tokens in constant time: both sides are hashed,
// so neither the length nor the content of a configured token leaks
// through timing, and every token is compared on every request.
type tokenSet struct {
	names  []string
	hashes [][sha256.Size]byte
}

func newTokenSet(ts []Token) *tokenSet {
	s := &tokenSet{}
	for _, t := range ts {
		s.names = append(s.names, t.Name)
		s.hashes = append(s.hashes, sha256.Sum256([]byte(t.Token.Reveal())))
	}
	return s
}

// lookup returns the name of the token presented, or false.
func (s *tokenSet) lookup(presented string) (string, bool) {
	h := sha256.Sum256([]byte(presented))
	found := -1
	for i := range s.hashes {
		if subtle.ConstantTimeCompare(h[:], s.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return s.names[found], true
}

// recoverer turns a panic into a logged 500 problem without a stack trace
// in the response. It also forbids content sniffing, so that no payload
// is ever rendered as markup by a browser.
func (b *Bridge) recoverer(c *gin.Context) {
	c.Header("X-Content-Type-Options", "nosniff")
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			b.hub.Log.Error("rest: handler panic", "path", c.Request.URL.EscapedPath(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if !c.Writer.Written() {
				fail(c, "internal", "")
			}
			c.Abort()
		}
	}()
	c.Next()
}

// authenticate proves the actor (a bearer token, or anonymous when allowed)
// and applies the rate limits: per token once proved, per client address
// otherwise (which also throttles token guessing).
func (b *Bridge) authenticate(c *gin.Context) {
	b.hub.Metrics.RequestIn(b.Name())
	token, given := bearer(c.Request)
	if !given && c.Request.Method == http.MethodGet {
		// EventSource cannot send headers: RFC 6750's query parameter.
		token, given = c.Query("access_token"), c.Query("access_token") != ""
	}
	if given {
		if name, ok := b.tokens.lookup(token); ok {
			if !b.limits.allow(c, "token:"+name, b.cfg.RateLimit.PerToken) {
				return
			}
			c.Set(actorKey, core.Actor{Protocol: "rest", ID: name})
			c.Next()
			return
		}
	}
	if !b.limits.allow(c, "ip:"+c.ClientIP(), b.cfg.RateLimit.PerIP) {
		return
	}
	switch {
	case given:
		c.Header("WWW-Authenticate", `Bearer realm="feedbridge", error="invalid_token"`)
		fail(c, "unauthorized", "the bearer token is not valid")
	case !b.cfg.Anonymous:
		c.Header("WWW-Authenticate", `Bearer realm="feedbridge"`)
		fail(c, "unauthorized", "send Authorization: Bearer TOKEN")
	default:
		c.Set(actorKey, core.Actor{Protocol: "rest", ID: core.Anonymous})
		c.Next()
	}
}

// bearer extracts an RFC 6750 bearer token; given is false without an
// Authorization header.
func bearer(r *http.Request) (token string, given bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true // some other scheme: a credential we cannot accept
	}
	return strings.TrimSpace(tok), true
}

// limiters holds one token bucket per client, bounded in number: when
// full, buckets that refilled completely (indistinguishable from new ones)
// are dropped first, then arbitrary ones.
type limiters struct {
	max int
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func newLimiters(max int) *limiters { return &limiters{max: max, m: map[string]*rate.Limiter{}} }

// allow takes one request from key's bucket, or answers 429 with
// Retry-After and returns false.
func (l *limiters) allow(c *gin.Context, key string, r Rate) bool {
	if r.Rate <= 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		lim = rate.NewLimiter(rate.Limit(r.Rate), r.Burst)
		l.m[key] = lim
	}
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay > 0 {
		res.CancelAt(now)
	}
	l.mu.Unlock()
	if delay == 0 {
		return true
	}
	c.Header("Retry-After", retryAfter(delay.Seconds()))
	fail(c, "rate-limited", "too many requests; retry after "+retryAfter(delay.Seconds())+"s")
	return false
}

// evict makes room for one bucket; l.mu is held.
func (l *limiters) evict(now time.Time) {
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

// exposedHeaders are the response headers browsers may read cross-origin.
const exposedHeaders = "ETag, Link, Location, Retry-After, Preference-Applied, Idempotent-Replayed"

// cors answers preflights and marks responses for allowed origins.
func (b *Bridge) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	allowed := b.cfg.CORS.AllowedOrigins
	if origin == "" || len(allowed) == 0 {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Add("Vary", "Origin")
	if !slices.Contains(allowed, "*") && !slices.Contains(allowed, origin) {
		c.Next() // no CORS headers: the browser refuses the response
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", exposedHeaders)
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, Prefer, Last-Event-ID")
		h.Set("Access-Control-Max-Age", strconv.Itoa(int(b.cfg.CORS.MaxAge.Seconds())))
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}
