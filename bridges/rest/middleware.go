package rest

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/feedbridge/feedbridge/core"
)

// actorKey holds the request's core.Actor in the gin context.
const actorKey = "feedbridge.actor"

// actorOf returns the actor the auth middleware proved.
func actorOf(c *gin.Context) core.Actor { return c.MustGet(actorKey).(core.Actor) }

// recoverer turns a panic into a logged 500 problem without a stack trace
// in the response. It also forbids content sniffing, so that no payload
// is ever rendered as markup by a browser.
func (b *Bridge) recoverer(c *gin.Context) {
	core.SetRoute(c.Request, c.FullPath()) // for the listener's request log and metrics
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
	token, given := core.RequestToken(c.Request, false) // ?access_token= for EventSource, which cannot send headers
	if given {
		if name, ok := b.tokens.Lookup(token); ok {
			if !b.allow(c, "token:"+name, b.cfg.RateLimit.PerToken) {
				return
			}
			c.Set(actorKey, core.Actor{Protocol: "rest", ID: name})
			c.Next()
			return
		}
	}
	if !b.allow(c, "ip:"+c.ClientIP(), b.cfg.RateLimit.PerIP) {
		return
	}
	switch {
	case given && emptyBearer(c.GetHeader("Authorization")):
		c.Header("WWW-Authenticate", `Bearer realm="feedbridge", error="invalid_token"`)
		fail(c, "unauthorized", "the bearer token is empty: is the variable that should hold it (such as $FEEDBRIDGE_TOKEN) set?")
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

// emptyBearer reports whether an Authorization header is "Bearer" with
// nothing after it: what a shell sends for "Bearer $TOKEN" when TOKEN is
// unset.
func emptyBearer(h string) bool {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(h), " ")
	return strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) == ""
}

// allow takes one request from key's bucket, or answers 429 with
// Retry-After and returns false.
func (b *Bridge) allow(c *gin.Context, key string, r core.Rate) bool {
	ok, wait := b.limits.Allow(key, r)
	if !ok {
		c.Header("Retry-After", core.RetryAfter(wait))
		fail(c, "rate-limited", "too many requests; retry after "+core.RetryAfter(wait)+"s")
	}
	return ok
}

// queryParams lists the query parameters of each route (by gin's route
// pattern), true for the ones that may be repeated; access_token (GET and
// HEAD only) is checked by authenticate.
var queryParams = map[string]map[string]bool{
	"/v1/feeds":               {"limit": false, "cursor": false},
	"/v1/feeds/:feed/items":   {"limit": false, "cursor": false, "before": false, "after": false, "wait": false, "id": false, "position": false},
	"/v1/feeds/:feed/events":  {"last_event_id": false},
	"/v1/events":              {"feeds": true, "last_event_id": false},
	"/v1/feeds/:feed/changes": {"since": false, "limit": false, "wait": false},
}

// strictQuery answers 400, naming the parameter, for a query that is not
// percent-encoded correctly, a parameter the route does not take, or one
// given twice that may be given once. (gin's own parsing drops what it
// cannot decode: "?cursor=%%%" would be no cursor at all.)
func (b *Bridge) strictQuery(c *gin.Context) {
	if c.Request.URL.RawQuery == "" || c.FullPath() == "" { // no route: its 404 says it all
		c.Next()
		return
	}
	q, err := core.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		fail(c, "bad-request", err.Error())
		return
	}
	allowed := queryParams[c.FullPath()]
	for name, vals := range q {
		repeatable, known := allowed[name]
		switch {
		case name == "access_token" && (c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead):
			known = true
		case !known:
			fail(c, "bad-request", "query parameter "+strconv.Quote(name)+" is not one this resource takes (see /v1/openapi.json)")
			return
		}
		if len(vals) > 1 && !repeatable {
			fail(c, "bad-request", "query parameter "+name+" is given "+strconv.Itoa(len(vals))+" times; give it once")
			return
		}
	}
	c.Next()
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
